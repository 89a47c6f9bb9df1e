"""Categories of the free text users leave as feedback: English keyword rules with negation handling."""

from __future__ import annotations

import re
from dataclasses import dataclass


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
