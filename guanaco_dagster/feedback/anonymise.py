"""What developers see of user conversations: contact details masked, users under per-submission pseudonyms.

Masking is rule-based and errs towards leaving ordinary numbers alone, so it is a safeguard, not a
guarantee. Card numbers and IBANs are masked only when their checksum holds (Luhn, ISO 7064 mod 97), IP
addresses only when `ipaddress` parses them. Presidio's pattern recognizers do the same offline, but need
spaCy installed (~400 MB) and its default engine fetches a spaCy model at run time, so stdlib rules it is.
Trade-offs, on purpose:
- a card number is 13 to 19 digits, alone or in groups split by single spaces or dashes; any digit run
  that passes Luhn goes, so a 13+-digit order number may be masked as a card;
- a dotted quad of numbers up to 255 (a version "1.2.3.4" too) is masked as an IP address;
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
import ipaddress
import re

EMAIL_MASK = "[email]"
URL_MASK = "[url]"
PHONE_MASK = "[phone]"
CARD_MASK = "[card]"
IBAN_MASK = "[iban]"
IP_MASK = "[ip]"

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


# Card numbers: 13-19 digits, in groups split by one space or dash, not part of a longer number.
_CARD_CANDIDATE = re.compile(r"(?<![\w.+\-])\d(?:[ -]?\d){12,18}(?![ -]?\d)(?!\w)")
# IBAN: country, two check digits, then up to 30 letters/digits, often in groups of four.
_IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_IPV4_CANDIDATE = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
# Hex groups and colons (optionally ending in a dotted quad); `ipaddress` decides.
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)"
)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum of payment card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """Whether an IBAN (spaces allowed) has a valid length and ISO 7064 mod-97 check digits."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _mask_card(match: re.Match[str]) -> str:
    return CARD_MASK if luhn_valid(re.sub(r"[ -]", "", match.group())) else match.group()


def _mask_iban(match: re.Match[str]) -> str:
    return IBAN_MASK if iban_valid(match.group()) else match.group()


def _mask_ip(match: re.Match[str]) -> str:
    candidate = match.group()
    # A run of colons and hex letters alone ("be:ef:ca") is not worth the mask; addresses hold digits.
    if ":" in candidate and not any(char.isdigit() for char in candidate):
        return candidate
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return candidate
    return IP_MASK


def mask_pii(text: str) -> str:
    """`text` with e-mail addresses, URLs, IBANs, card numbers, IP addresses and phone numbers masked.

    The masks are "[email]", "[url]", "[iban]", "[card]", "[ip]" and "[phone]".
    """
    # E-mail first: its domain would otherwise be read as a URL; URLs before numbers, since paths and
    # query strings hold digit runs; cards before phones, whose rule would take a card's first digits.
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _URL.sub(URL_MASK, text)
    text = _IBAN_CANDIDATE.sub(_mask_iban, text)
    text = _CARD_CANDIDATE.sub(_mask_card, text)
    text = _IPV6_CANDIDATE.sub(_mask_ip, text)
    text = _IPV4_CANDIDATE.sub(_mask_ip, text)
    return _PHONE_CANDIDATE.sub(_mask_phone, text)


_PSEUDONYM_HEX_DIGITS = 10


def pseudonymise(user_id: str, salt: str, key: bytes) -> str:
    """A stable pseudonym such as "user-3f9a1c07d2" for `user_id`, different for every `salt`.

    `key` is the platform's secret (see pseudonym_key.py), so nobody without it can test a guessed user
    id against a pseudonym. Use the submission id as the salt: a developer can follow one user within a
    submission but not link users across submissions. 40 bits keep collisions unlikely among tens of
    thousands of users.
    """
    if not salt:
        raise ValueError(
            "pseudonymise needs a non-empty salt (the submission id); without one, "
            "pseudonyms would link users across submissions"
        )
    if not key:
        raise ValueError("pseudonymise needs the platform's pseudonym key, or pseudonyms are guessable")
    message = salt.encode() + b"\0" + user_id.encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return f"user-{digest[:_PSEUDONYM_HEX_DIGITS]}"
