"""Statistics over the feedback app users leave on a model: thumbs, intervals, categories, repetition."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise

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


@dataclass(frozen=True)
class FeedbackRule:
    """Phrases that put feedback in a category.

    `phrases` are regular-expression fragments matched case-insensitively on word boundaries. A match
    preceded, in the same clause, by a negation ("not", "never", "isn't", ...) within three words does
    not count for `category` but counts for `negated_category` when one is given ("not interesting" is
    boring; "not boring" is nothing in particular). `category` is None for phrases that only mean
    something when negated ("doesn't make sense").
    """

    category: str | None
    phrases: tuple[str, ...]
    negated_category: str | None = None


# One table, read top to bottom; extend it here. Categories are reported in the order they first appear.
FEEDBACK_RULES: tuple[FeedbackRule, ...] = (
    FeedbackRule(
        "repetitive",
        (
            r"repeat\w*",
            r"repetiti\w*",
            r"same thing",
            r"same (?:answers?|repl(?:y|ies)|responses?|lines?)",
            r"over and over",
            r"again and again",
            r"loop\w*",
            r"keeps? saying",
            r"parrot\w*",
            r"copies",
        ),
    ),
    FeedbackRule(
        "incoherent",
        (
            r"incoherent",
            r"nonsens\w*",
            r"gibberish",
            r"word salad",
            r"garbled",
            r"confus\w*",
            r"random",
            r"mak(?:e|es|ing) no sense",
            r"made no sense",
            r"broken english",
            r"weird (?:text|symbols)",
        ),
    ),
    FeedbackRule(None, (r"mak(?:e|es|ing) (?:any )?sense", r"made (?:any )?sense"), "incoherent"),
    FeedbackRule(
        "off_character",
        (
            r"out of (?:character|persona)",
            r"ooc",
            r"(?:broke|breaks|breaking|break) (?:the )?(?:character|persona)",
            r"forg[eo]t (?:it'?s|its|their|his|her|the) (?:character|persona|role)",
            r"wrong character",
            r"as an ai",
            r"language model",
            r"acts? like an? (?:ai|assistant|chatbot)",
        ),
    ),
    FeedbackRule(None, (r"(?:stay(?:s|ed|ing)? )?in (?:character|persona)",), "off_character"),
    FeedbackRule(
        "too_short",
        (
            r"too (?:short|brief)",
            r"short (?:answers?|repl(?:y|ies)|responses?|messages?)",
            r"one[- ]word (?:answers?|repl(?:y|ies)|responses?)",
            r"longer (?:answers?|repl(?:y|ies)|responses?)",
            r"more detail\w*",
            r"says? (?:very|so) little",
        ),
    ),
    FeedbackRule(None, (r"long enough", r"detailed enough", r"enough detail"), "too_short"),
    FeedbackRule(
        "too_long",
        (
            # "took too long" is about speed, not length.
            r"(?<!took )(?<!takes )(?<!taking )too long",
            r"too wordy",
            r"wordy",
            r"verbose",
            r"rambl\w*",
            r"long[- ]winded",
            r"walls? of text",
            r"essays?",
            r"shorter (?:answers?|repl(?:y|ies)|responses?)",
        ),
    ),
    FeedbackRule(None, (r"short enough",), "too_long"),
    FeedbackRule(
        "boring",
        (
            r"boring",
            r"bored",
            r"bland",
            r"dull",
            r"generic",
            r"lifeless",
            r"robotic",
            r"meh",
            r"uninteresting",
            r"unoriginal",
            r"dry",
        ),
    ),
    FeedbackRule(
        "rude_or_toxic",
        (
            r"rude",
            r"toxic",
            r"offensive",
            r"insult\w*",
            r"racis[mt]",
            r"sexis[mt]",
            r"abusive",
            r"hostile",
            r"aggressive",
            r"creepy",
            r"disrespectful",
            r"harass\w*",
            r"threat\w*",
            r"hateful",
            r"slurs?",
            r"inappropriate",
            r"swear\w*",
            r"(?:so|very|too|really|being|was|is) mean",
            r"mean to me",
        ),
    ),
    FeedbackRule(
        "engaging",
        (
            r"engag\w*",
            r"interesting",
            r"immersive",
            r"fun",
            r"entertaining",
            r"captivating",
            r"addictive",
        ),
        "boring",
    ),
    # Plain praise: engaging when said, but "not great" is lukewarm, not boring.
    FeedbackRule(
        "engaging",
        (
            r"great",
            r"amazing",
            r"awesome",
            r"love[ds]?",
            r"enjoy\w*",
            r"best (?:bot|chat|ai)",
            r"realistic",
            r"natural",
        ),
    ),
    FeedbackRule(
        "funny",
        (
            r"funny",
            r"funniest",
            r"hilarious",
            r"lol\w*",
            r"lmao",
            r"rofl",
            r"(?:ha){2,}\w*",
            r"humou?r\w*",
            r"jokes?",
            r"joking",
            r"laugh\w*",
            r"witty",
        ),
    ),
    FeedbackRule(
        "creative",
        (r"creativ\w*", r"imaginative", r"original", r"unique", r"clever", r"inventive", r"surpris\w*"),
        "boring",
    ),
    FeedbackRule(
        "slow",
        (
            r"slow\w*",
            r"lag\w*",
            r"delay\w*",
            r"loading",
            r"time[ds]? ?out",
            r"(?:took|takes|taking) (?:too|so) long",
            r"forever to",
            r"(?:waited|waiting) (?:so|too) long",
        ),
    ),
)

OTHER = "other"
EMPTY = "empty"

# Every category categorise_feedback can return, in the order it reports them.
FEEDBACK_CATEGORIES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [c for rule in FEEDBACK_RULES for c in (rule.category, rule.negated_category) if c] + [OTHER, EMPTY]
    )
)

_COMPILED_RULES = tuple(
    (rule, re.compile(r"\b(?:" + "|".join(rule.phrases) + r")\b", re.IGNORECASE)) for rule in FEEDBACK_RULES
)
_NEGATORS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "hardly",
        "barely",
        "nothing",
        "nor",
        "neither",
        "isnt",
        "wasnt",
        "arent",
        "werent",
        "dont",
        "doesnt",
        "didnt",
        "cant",
        "couldnt",
        "wont",
        "wouldnt",
        "aint",
        "cannot",
    }
)
_NEGATION_WINDOW_WORDS = 3
# Three words fit in this many characters; looking no further keeps long feedback linear to categorise.
_NEGATION_LOOKBACK_CHARS = 80
# A negation reaches no further than its clause: "not long, but boring" is boring.
_CLAUSE_BOUNDARY = re.compile(r"[.,;:!?()\n]|\bbut\b|\bthough\b|\bhowever\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z']+")


def _is_negated(text: str, match_start: int) -> bool:
    """Whether a negation word sits within a few words before `match_start`, in the same clause."""
    before = text[max(0, match_start - _NEGATION_LOOKBACK_CHARS) : match_start]
    clause = _CLAUSE_BOUNDARY.split(before)[-1]
    words = _WORD.findall(clause.lower())[-_NEGATION_WINDOW_WORDS:]
    return any(word in _NEGATORS or word.endswith("n't") for word in words)


def categorise_feedback(text: str) -> list[str]:
    """Categories of a user's free-text feedback, per FEEDBACK_RULES; ["empty"] or ["other"] when none."""
    if not text.strip():
        return [EMPTY]
    # Curly apostrophes come from phone keyboards; "isn’t" must negate like "isn't".
    normalised = text.replace("\u2019", "'")
    found: set[str] = set()
    for rule, pattern in _COMPILED_RULES:
        for match in pattern.finditer(normalised):
            category = rule.negated_category if _is_negated(normalised, match.start()) else rule.category
            if category:
                found.add(category)
    return [c for c in FEEDBACK_CATEGORIES if c in found] or [OTHER]


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


def summarise_feedback(items: Sequence[FeedbackItem]) -> FeedbackSummary:
    """Summarise a model's feedback.

    Thumbs and categories count every item; conversation metrics count each conversation once.
    The repetition score averages only conversations with at least two bot replies, since shorter
    ones cannot repeat and would pull the mean towards 0.
    """
    total = len(items)
    thumbs_up = sum(1 for item in items if item.thumbs_up)
    low, high = wilson_interval(thumbs_up, total)
    categories = Counter(c for item in items for c in categorise_feedback(item.text))
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
