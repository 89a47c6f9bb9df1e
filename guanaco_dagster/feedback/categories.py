"""Categories of feedback text, by the method the operator picks: keyword rules, embeddings, or both.

`categorise` is the one entry point. "rules" are the English keyword rules (`feedback_rules`); "embeddings"
is a classifier on sentence embeddings (`category_classifier`) trained, on first use in a process, on the
labelled texts shipped in `data/labelled_feedback.jsonl`; "both" reports what either finds (the union
scored higher in cross-validation than using embeddings only where the rules find nothing). The labelled set
also measures the methods (benchmarks/bench_feedback_categories.py): its held-out texts are never trained on
there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from guanaco_dagster.feedback.category_config import DEFAULT_CATEGORY_METHOD, CategoryMethod
from guanaco_dagster.feedback.feedback_rules import FEEDBACK_CATEGORIES, OTHER, categorise_feedback

if TYPE_CHECKING:
    from guanaco_dagster.feedback.category_classifier import EmbeddingCategoriser

LABELLED_FEEDBACK_FILE = "data/labelled_feedback.jsonl"


@dataclass(frozen=True)
class LabelledFeedback:
    """One hand-labelled feedback text; `held_out` texts are for measuring, never for training."""

    text: str
    categories: frozenset[str]
    held_out: bool


def load_labelled_feedback() -> list[LabelledFeedback]:
    """The labelled feedback texts shipped with the package, in file order."""
    source = resources.files("guanaco_dagster.feedback").joinpath(LABELLED_FEEDBACK_FILE)
    examples = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        categories = frozenset(row["categories"])
        unknown = sorted(categories - set(FEEDBACK_CATEGORIES))
        if unknown or not categories or row["split"] not in ("train", "test"):
            raise ValueError(
                f"bad labelled feedback on line {number} of {LABELLED_FEEDBACK_FILE}: categories "
                f"{sorted(categories)} (known: {list(FEEDBACK_CATEGORIES)}), split {row['split']!r} "
                f"(train or test)"
            )
        examples.append(LabelledFeedback(row["text"], categories, held_out=row["split"] == "test"))
    return examples


_classifier_lock = threading.Lock()
_classifier: EmbeddingCategoriser | None = None


def shipped_classifier() -> EmbeddingCategoriser:
    """The embedding classifier trained on every shipped labelled text; trained once per process."""
    global _classifier
    with _classifier_lock:
        if _classifier is None:
            from guanaco_dagster.feedback.category_classifier import EmbeddingCategoriser

            _classifier = EmbeddingCategoriser.train(
                (example.text, example.categories) for example in load_labelled_feedback()
            )
        return _classifier


# The one background load of the classifier in this process, once started.
_warm_up: threading.Thread | None = None
_warm_up_lock = threading.Lock()


def warm_up(method: CategoryMethod) -> threading.Thread | None:
    """Load the embedding classifier in the background when `method` needs it (once per process)."""
    global _warm_up
    # Not the classifier's lock: that one is held for the whole load, and a request must never wait on it.
    with _warm_up_lock:
        if method == "rules" or _classifier is not None or _warm_up is not None:
            return None
        _warm_up = threading.Thread(target=shipped_classifier, name="categories-warm-up", daemon=True)
    _warm_up.start()
    return _warm_up


def categories_on_arrival(text: str, method: CategoryMethod) -> list[str] | None:
    """`text`'s categories as feedback arrives, or None while the embedding classifier is still loading
    (the summary then categorises the text itself): a request never waits for the model."""
    if method != "rules" and _classifier is None:
        warm_up(method)
        return None
    return categorise([text], method)[0]


def combine(*findings: Sequence[str]) -> list[str]:
    """The categories any finding has, in FEEDBACK_CATEGORIES order; "other" only when nothing else is."""
    found = {c for finding in findings for c in finding}
    specific = found - {OTHER}
    return [c for c in FEEDBACK_CATEGORIES if c in (specific or found)]


def categorise(
    texts: Sequence[str],
    method: CategoryMethod = DEFAULT_CATEGORY_METHOD,
    classifier: EmbeddingCategoriser | None = None,
) -> list[list[str]]:
    """Each text's categories by `method`, in FEEDBACK_CATEGORIES order; ["empty"] or ["other"] when none.

    `classifier` replaces the shipped one (the benchmark passes one trained on the training split only).
    """
    if method == "rules" or not texts:
        return [categorise_feedback(text) for text in texts]
    if method not in ("embeddings", "both"):
        raise ValueError(f"unknown feedback category method {method!r}: use rules, embeddings or both")
    learned = (classifier or shipped_classifier()).categorise(texts)
    if method == "embeddings":
        return learned
    return [combine(categorise_feedback(text), found) for text, found in zip(texts, learned, strict=True)]


def category_f1(truth: Sequence[frozenset[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """F1 of each category that occurs in `truth` (a category never true is left out, not scored 0)."""
    pairs = list(zip(truth, predicted, strict=True))
    scores = {}
    for category in FEEDBACK_CATEGORIES:
        true_positive = sum(category in t and category in p for t, p in pairs)
        false_positive = sum(category not in t and category in p for t, p in pairs)
        false_negative = sum(category in t and category not in p for t, p in pairs)
        if true_positive + false_negative:
            scores[category] = 2 * true_positive / (2 * true_positive + false_positive + false_negative)
    return scores


def macro_f1(truth: Sequence[frozenset[str]], predicted: Sequence[Sequence[str]]) -> float:
    """The mean of `category_f1` over the categories `truth` contains."""
    scores = category_f1(truth, predicted)
    return sum(scores.values()) / len(scores)
