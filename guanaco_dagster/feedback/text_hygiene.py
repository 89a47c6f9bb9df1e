"""Text that came from another person, made safe to show: no terminal escapes, no control characters.

Feedback, messages and names are typed by beta users and developers; printed raw, "\x1b[2J" clears the
developer's terminal and an OSC 8 sequence hides a link. Rich's markup escaping does not touch control
characters, so everything shown by the CLI or put into Dagster metadata goes through `clean_text` first.
Standard library only: the CLI imports this.
"""

from __future__ import annotations

import re
import unicodedata

# Whole escape sequences go, not just their ESC byte, so no "[2J" litter is left: CSI (ESC [ … final
# byte), OSC/DCS/APC/PM/SOS strings (ESC ] … BEL or ESC \), and two-byte escapes; also their 8-bit forms.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x90\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
)
# Bidirectional overrides and isolates reorder what is displayed ("Trojan Source").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = "\n\t"


def _shown(char: str, multiline: bool) -> str:
    if char in _LINE_BREAKS:
        return char if multiline else " "
    if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
        return ""
    return char


def clean_text(text: str, *, multiline: bool = True) -> str:
    """`text` without escape sequences and control characters; newlines and tabs stay when `multiline`.

    Carriage returns (which overwrite a line) become newlines; with `multiline=False` every line break
    and tab becomes a space, for names and one-line fields.
    """
    text = _ESCAPE_SEQUENCE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if text.isprintable():  # the common case: nothing else to do
        return text
    return "".join(_shown(char, multiline) for char in text)


def clean_line(text: str) -> str:
    """`text` cleaned for a one-line display: names, ids, table cells."""
    return clean_text(text, multiline=False)


# What turns text into markup: code, emphasis, HTML, table cells, headings, and "](" (links, images).
# Lone brackets stay, so masks such as "[email]" read as they are.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_<>|#]|\]\()")


def markdown_text(text: str) -> str:
    """`text` as one line of literal Markdown: cleaned, with what would make code, emphasis, HTML, tables,
    headings, links or images escaped."""
    return _MARKDOWN_SPECIAL.sub(_escaped, clean_line(text))


def _escaped(match: re.Match[str]) -> str:
    return "]\\(" if match.group() == "](" else "\\" + match.group()
