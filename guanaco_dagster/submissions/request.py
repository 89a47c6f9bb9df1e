"""What a developer submits: the validated request body of `POST /models/submit`.

Kept apart from the store code so the CLI's client can share the model without importing SQLAlchemy.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guanaco_dagster.submissions.formatter import (
    GenerationParams,
    PromptFormatter,
    refuse_control_characters,
)

# Hugging Face repo ids: "org/name" with letters, digits, '-', '_', '.'; no '..' or leading/trailing dots.
# Always `fullmatch`: `$` also matches before a trailing newline, which let "org/model\n" through.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# Branches, tags and commits: git's ref rules, narrowed to the characters Hub refs use.
_REVISION = re.compile(r"[A-Za-z0-9._+/-]{1,200}")
_REVISION_FORBIDDEN = ("..", "//", "/.", "@{")


class SubmissionRequest(BaseModel):
    """What a developer submits (the shape of Chai's `POST /models/submit`)."""

    model_config = ConfigDict(extra="forbid")

    model_repo: str = Field(description="Hugging Face repo id, e.g. 'org/model'.")
    hf_revision: str = Field(default="main", min_length=1, max_length=200)
    generation_params: GenerationParams = Field(default_factory=GenerationParams)
    formatter: PromptFormatter | None = Field(
        default=None,
        description="How chats are laid out for the model. Omit it to let the platform use the model's own "
        "chat template (`auto`), or Chai's default layout when the model ships none.",
    )
    model_name: str | None = Field(default=None, max_length=200)
    # Chai's client may send its reward-model fields; there is no reward stage here, so they are ignored.
    reward_repo: str | None = Field(default=None, max_length=200, description="Accepted and ignored.")
    reward_formatter: dict | None = Field(default=None, description="Accepted and ignored.")

    @field_validator("model_repo")
    @classmethod
    def _repo_id_is_valid(cls, value: str) -> str:
        refuse_control_characters("model_repo", value)
        if value.endswith(".git"):
            raise ValueError(f"model_repo '{value}' ends in '.git': give the repo id alone, e.g. 'org/model'")
        if not _REPO_ID.fullmatch(value) or ".." in value or value.endswith((".", "-")):
            raise ValueError(f"'{value}' is not a Hugging Face repo id of the form 'org/model'")
        return value

    @field_validator("hf_revision")
    @classmethod
    def _revision_is_valid(cls, value: str) -> str:
        refuse_control_characters("hf_revision", value)
        if (
            not _REVISION.fullmatch(value)
            or any(part in value for part in _REVISION_FORBIDDEN)
            or value.startswith(("/", "-", "."))
            or value.endswith(("/", ".", ".lock"))
        ):
            raise ValueError(
                f"hf_revision '{value}' is not a branch, tag or commit name: use letters, digits and "
                "'._+/-', e.g. 'main', 'v1.0' or a 40-character commit sha"
            )
        return value

    @field_validator("model_name")
    @classmethod
    def _model_name_is_printable(cls, value: str | None) -> str | None:
        return refuse_control_characters("model_name", value) if value is not None else None
