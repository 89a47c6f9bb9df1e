"""What developers see of user conversations: contact details masked, users under per-submission pseudonyms.

Masking is rule-based and errs towards leaving ordinary numbers alone, so it is a safeguard, not a
guarantee. Trade-offs, on purpose:
- a phone number is 7 to 15 digits (E.164 allows 15) written with separators or a leading '+'; an
  unbroken run needs 10 or more digits, so "1000000 coins" stays but "07911123456" goes;
- dates (2026-11-24, 24.11.2026), year ranges (2019-2023), decimals (3.14159265) and dotted thousands
  (1.000.000) are left alone, so a phone number written exactly like one of them is missed;
- a bare domain counts as a URL only with a path ("example.com/me"): "file.txt" and "e.g." stay;
- masks carry no digits or '@', so masking twice changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re

EMAIL_MASK = "[email]"
URL_MASK = "[url]"
PHONE_MASK = "[phone]"

# Every pattern starts only where its run of characters starts: trying each position inside a long run
# ("a.a.a.a...") would make masking quadratic in the length of the text.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_%+-])(?<![A-Za-z0-9_%+-]\.)"  # "...jane@x.com": the ellipsis is not the address
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)

# A URL ends before trailing punctuation, which belongs to the sentence around it.
_URL_TAIL = r"(?:[^\s<>\"]*[^\s<>\"'.,;:!?)\]}])?"
_URL = re.compile(
    r"\bhttps?://[^\s<>\"'.,;:!?)\]}]"
    + _URL_TAIL  # with a scheme
    + r"|\bwww\.[A-Za-z0-9-]"
    + _URL_TAIL  # www.-prefixed
    + r"|(?<![A-Za-z0-9-])(?<![A-Za-z0-9-]\.)(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}/"
    + _URL_TAIL,  # a bare domain with a path
    re.IGNORECASE,
)

# Candidates for phone numbers: digits and separators, not inside a word, a decimal or a longer number.
# _looks_like_phone decides; a rejected candidate is left whole, never masked in part.
_PHONE_CANDIDATE = re.compile(r"(?<![\w.+\-])\+?\(?\d[\d() .\-]*\d(?!\w)(?!\.\d)")
_NOT_PHONE = (
    re.compile(r"\d{4}[-.]\d{1,2}[-.]\d{1,2}"),  # ISO date
    re.compile(r"\d{1,2}[-.]\d{1,2}[-.]\d{2,4}"),  # day-month-year date
    re.compile(r"(?:19|20)\d{2} ?- ?(?:19|20)\d{2}"),  # year range
    re.compile(r"\d+\.\d+"),  # decimal
    re.compile(r"\d{1,3}(?:\.\d{3})+"),  # dotted thousands
)
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15
_MIN_UNSEPARATED_PHONE_DIGITS = 10


def _looks_like_phone(candidate: str) -> bool:
    """Whether a run of digits and separators is written like a phone number rather than a quantity."""
    groups = re.findall(r"\d+", candidate)
    digits = sum(len(group) for group in groups)
    if not _MIN_PHONE_DIGITS <= digits <= _MAX_PHONE_DIGITS:
        return False
    if any(pattern.fullmatch(candidate.lstrip("(")) for pattern in _NOT_PHONE):
        return False
    if candidate.startswith("+"):
        return True
    if len(groups) == 1:
        return digits >= _MIN_UNSEPARATED_PHONE_DIGITS
    # Phone numbers have at most one one-digit group ("+33 6 12 34 56 78", "1-800-..."); "1 2 3 4 5 6 7"
    # is a list of numbers.
    return sum(1 for group in groups if len(group) == 1) <= 1


def _mask_phone(match: re.Match[str]) -> str:
    return PHONE_MASK if _looks_like_phone(match.group()) else match.group()


def mask_pii(text: str) -> str:
    """`text` with e-mail addresses, URLs and phone numbers replaced by "[email]", "[url]", "[phone]"."""
    # E-mail first: its domain would otherwise be read as a URL, and URLs before phones, since paths
    # and query strings hold digit runs.
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _URL.sub(URL_MASK, text)
    return _PHONE_CANDIDATE.sub(_mask_phone, text)


_PSEUDONYM_HEX_DIGITS = 10


def pseudonymise(user_id: str, salt: str) -> str:
    """A stable pseudonym such as "user-3f9a1c07d2" for `user_id`, different for every `salt`.

    Use the submission id as the salt: a developer can follow one user within a submission but not
    link users across submissions. 40 bits keep collisions unlikely among tens of thousands of users.
    """
    if not salt:
        raise ValueError(
            "pseudonymise needs a non-empty salt (the submission id); without one, "
            "pseudonyms would link users across submissions"
        )
    digest = hmac.new(salt.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return f"user-{digest[:_PSEUDONYM_HEX_DIGITS]}"
