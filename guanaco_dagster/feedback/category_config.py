"""How feedback text is put in categories: a setting of its own module, so `Settings` can inherit it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

CategoryMethod = Literal["rules", "embeddings", "both"]
# Best macro-F1 on the held-out labelled texts (benchmarks/results/feedback_categories.json).
DEFAULT_CATEGORY_METHOD: CategoryMethod = "both"


class FeedbackCategoryConfig(BaseModel):
    """How feedback text is put in categories (`GUANACO_FEEDBACK_CATEGORY_METHOD`)."""

    feedback_category_method: CategoryMethod = Field(
        default=DEFAULT_CATEGORY_METHOD,
        description="rules: English keyword rules; embeddings: a classifier on sentence embeddings "
        "(all-MiniLM-L6-v2, loaded once per process); both: the categories either finds.",
    )
