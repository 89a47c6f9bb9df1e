"""How a submission's chats are laid out: by the model's own chat template, or by a prompt formatter.

A developer who submits a formatter gets it. One who submits none leaves it to the platform: intake
(`raw_weights`) chooses `auto` when the model ships a chat template and `formatter-default` (Chai's
default formatter) when it does not, and records the choice on the submission for every later stage.
"""

from __future__ import annotations

from enum import StrEnum


class ChatFormat(StrEnum):
    """The value of `Submission.chat_format`."""

    AUTO = "auto"  # the model's own chat template, through vLLM's chat endpoint
    FORMATTER = "formatter"  # the developer's formatter, through the completions endpoint
    FORMATTER_DEFAULT = "formatter-default"  # left to the platform, but the model ships no chat template


def requested_chat_format(formatter_submitted: bool) -> ChatFormat:
    """What a new submission asks for: its own formatter, or `auto` (decided at intake)."""
    return ChatFormat.FORMATTER if formatter_submitted else ChatFormat.AUTO


def resolved_chat_format(requested: str | None, model_ships_chat_template: bool) -> ChatFormat:
    """The chat format intake records: a submitted formatter stays; otherwise the model's template when it
    ships one (a redeploy of a new revision decides again)."""
    if requested == ChatFormat.FORMATTER:
        return ChatFormat.FORMATTER
    return ChatFormat.AUTO if model_ships_chat_template else ChatFormat.FORMATTER_DEFAULT


def uses_model_chat_template(chat_format: str | None) -> bool:
    """Whether chats go through the chat endpoint with the model's template (rows from before chat formats
    existed have None: they keep their formatter)."""
    return chat_format == ChatFormat.AUTO
