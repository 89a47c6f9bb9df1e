"""A model server's log for people: colour codes removed, and the one line that says what went wrong."""

from __future__ import annotations

import re

# CSI sequences (colours, cursor moves) and the few single-character escapes vLLM's loggers emit.
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
MAX_CAUSE_CHARS = 300


def strip_ansi(text: str) -> str:
    """The text without terminal escape sequences."""
    return ANSI_ESCAPE.sub("", text)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_CAUSE_CHARS else text[: MAX_CAUSE_CHARS - 1].rstrip() + "…"


def failure_reason(log_text: str) -> str:
    """The most telling line of a failed server's log, at most ~300 characters ('' when none).

    In order: our own server's error line; pydantic's "Value error, …" (how vLLM reports a bad
    configuration, e.g. a max_model_len the model cannot take); the last `SomethingError: message` line.
    """
    lines = strip_ansi(log_text).splitlines()
    for line in reversed(lines):
        if "guanaco-serve ERROR" in line:
            return _shorten(line.split("guanaco-serve ERROR", 1)[1])
    for line in reversed(lines):
        if "Value error, " in line:
            return _shorten(line.split("Value error, ", 1)[1].split(" [type=", 1)[0])
    for line in reversed(lines):
        match = re.search(r"\b(\w+(?:Error|Exception)): (.+)$", line)
        if match:
            return _shorten(f"{match.group(1)}: {match.group(2)}")
    return ""
