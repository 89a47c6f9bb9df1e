"""Statistics over the feedback app users leave on a model: thumbs, intervals, categories, repetition.

Text is put in categories by `categories.categorise` (keyword rules, embeddings or both); this module only
counts them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise

from guanaco_dagster.feedback.categories import DEFAULT_CATEGORY_METHOD, CategoryMethod, categorise
from guanaco_dagster.feedback.feedback_rules import FEEDBACK_CATEGORIES, categorise_feedback

# The categories a summary counts are part of this module's answer, so their names are importable here too.
__all__ = [
    "FEEDBACK_CATEGORIES",
    "FeedbackItem",
    "FeedbackSummary",
    "categorise_feedback",
    "repetition_score",
    "summarise_feedback",
    "thumbs_up_standard_error",
    "wilson_interval",
]

# z for a two-sided 95% interval.
Z_95 = 1.959964


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0.0, 1.0) when there is nothing to go on."""
    _check_counts(successes, total)
    if total == 0:
        return 0.0, 1.0
    ratio = successes / total
    z_squared = z * z
    denominator = 1 + z_squared / total
    centre = (ratio + z_squared / (2 * total)) / denominator
    half_width = z * math.sqrt(ratio * (1 - ratio) / total + z_squared / (4 * total * total)) / denominator
    # At 0 and at total the bound is exact in theory; pin it so rounding never excludes the ratio.
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)
    high = 1.0 if successes == total else min(1.0, centre + half_width)
    return low, high


def thumbs_up_standard_error(successes: int, total: int) -> float:
    """Standard error of the thumbs-up ratio, sqrt(p(1-p)/n); 0.0 for no feedback (see the interval)."""
    _check_counts(successes, total)
    if total == 0:
        # Undefined; 0.0 keeps the summary JSON-valid. The Wilson interval (0, 1) carries the uncertainty.
        return 0.0
    ratio = successes / total
    return math.sqrt(ratio * (1 - ratio) / total)


def _check_counts(successes: int, total: int) -> None:
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total, got successes={successes}, total={total}")


_TOKEN = re.compile(r"\w+")


def _shingles(words: list[str], size: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def _reply_similarity(first: str, second: str) -> float:
    """Jaccard similarity of two replies over word trigrams; unigrams when either has under 3 words."""
    first_words = _TOKEN.findall(first.lower())
    second_words = _TOKEN.findall(second.lower())
    if first_words == second_words:
        return 1.0
    size = 3 if min(len(first_words), len(second_words)) >= 3 else 1
    first_set, second_set = _shingles(first_words, size), _shingles(second_words, size)
    union = first_set | second_set
    return len(first_set & second_set) / len(union) if union else 0.0


def repetition_score(bot_replies: Sequence[str]) -> float:
    """Mean similarity of consecutive bot replies in one conversation: 0 = all new, 1 = all identical."""
    if len(bot_replies) < 2:
        return 0.0
    pairs = list(pairwise(bot_replies))
    return sum(_reply_similarity(a, b) for a, b in pairs) / len(pairs)


@dataclass(frozen=True)
class FeedbackItem:
    """One piece of feedback: thumbs, optional text, and the conversation (sender, content) it was about."""

    conversation_id: str
    thumbs_up: bool
    text: str = ""
    messages: Sequence[tuple[str, str]] = field(default_factory=tuple)
    # The text's categories when they were assigned as the feedback arrived; None = categorise it now.
    categories: Sequence[str] | None = None


@dataclass(frozen=True)
class FeedbackSummary:
    """What a model's feedback adds up to; `to_dict` is JSON-ready, `to_markdown` is for people."""

    feedback_count: int
    thumbs_up: int
    thumbs_down: int
    thumbs_up_ratio: float
    wilson_low: float
    wilson_high: float
    standard_error: float
    category_counts: dict[str, int]
    mean_conversation_length: float
    mean_bot_reply_words: float
    repetition_score: float

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-serialisable fields; category_counts keeps its most-common-first order."""
        return asdict(self)

    def to_markdown(self) -> str:
        """A metrics table and a categories table, for Dagster metadata and the CLI."""
        rows = [
            ("Feedback", f"{self.feedback_count}"),
            ("Thumbs up", f"{self.thumbs_up}"),
            ("Thumbs down", f"{self.thumbs_down}"),
            ("Thumbs-up ratio", f"{self.thumbs_up_ratio:.1%}"),
            ("95% interval (Wilson)", f"{self.wilson_low:.1%} – {self.wilson_high:.1%}"),
            ("Standard error", f"{self.standard_error:.3f}"),
            ("Mean conversation length (messages)", f"{self.mean_conversation_length:.1f}"),
            ("Mean bot reply (words)", f"{self.mean_bot_reply_words:.1f}"),
            ("Repetition score (0–1)", f"{self.repetition_score:.3f}"),
        ]
        lines = ["| Metric | Value |", "| --- | --- |", *(f"| {name} | {value} |" for name, value in rows)]
        lines += ["", "| Category | Count | Share |", "| --- | ---: | ---: |"]
        for category, count in self.category_counts.items():
            share = count / self.feedback_count if self.feedback_count else 0.0
            lines.append(f"| {category} | {count} | {share:.1%} |")
        if not self.category_counts:
            lines.append("| (no feedback) | 0 | – |")
        return "\n".join(lines) + "\n"


def _latest_conversations(items: Sequence[FeedbackItem]) -> list[Sequence[tuple[str, str]]]:
    """One message list per conversation: the longest seen, since later feedback carries more of it."""
    by_conversation: dict[str, Sequence[tuple[str, str]]] = {}
    for item in items:
        known = by_conversation.get(item.conversation_id)
        if known is None or len(item.messages) > len(known):
            by_conversation[item.conversation_id] = item.messages
    return list(by_conversation.values())


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _bot_replies(messages: Sequence[tuple[str, str]]) -> list[str]:
    return [content for sender, content in messages if sender == "bot"]


def item_categories(items: Sequence[FeedbackItem], method: CategoryMethod) -> list[Sequence[str]]:
    """Each item's categories: those assigned on arrival, the others' by `method` (in one batch)."""
    missing = [index for index, item in enumerate(items) if item.categories is None]
    found = categorise([items[index].text for index in missing], method) if missing else []
    assigned = dict(zip(missing, found, strict=True))
    return [item.categories if item.categories is not None else assigned[i] for i, item in enumerate(items)]


def summarise_feedback(
    items: Sequence[FeedbackItem], category_method: CategoryMethod = DEFAULT_CATEGORY_METHOD
) -> FeedbackSummary:
    """Summarise a model's feedback; `category_method` puts its text in categories (see `categorise`).

    Thumbs and categories count every item; conversation metrics count each conversation once.
    The repetition score averages only conversations with at least two bot replies, since shorter
    ones cannot repeat and would pull the mean towards 0.
    """
    total = len(items)
    thumbs_up = sum(1 for item in items if item.thumbs_up)
    low, high = wilson_interval(thumbs_up, total)
    categories = Counter(c for found in item_categories(items, category_method) for c in found)
    conversations = _latest_conversations(items)
    replies_per_conversation = [_bot_replies(messages) for messages in conversations]
    return FeedbackSummary(
        feedback_count=total,
        thumbs_up=thumbs_up,
        thumbs_down=total - thumbs_up,
        thumbs_up_ratio=thumbs_up / total if total else 0.0,
        wilson_low=low,
        wilson_high=high,
        standard_error=thumbs_up_standard_error(thumbs_up, total),
        category_counts=dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))),
        mean_conversation_length=_mean([len(messages) for messages in conversations]),
        mean_bot_reply_words=_mean(
            [len(_TOKEN.findall(reply)) for replies in replies_per_conversation for reply in replies]
        ),
        repetition_score=_mean(
            [repetition_score(replies) for replies in replies_per_conversation if len(replies) >= 2]
        ),
    )
