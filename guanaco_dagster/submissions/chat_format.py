"""How a submission's chats are laid out: by the model's own chat template, or by a prompt formatter.

A developer who submits a formatter gets it (`formatter`). One who submits none leaves it to the platform
(None until intake decides): intake (`raw_weights`) chooses `auto` when the model ships a chat template and
`formatter-default` (Chai's default formatter) when it does not, and records the choice on the submission
for every later stage.
"""

from __future__ import annotations

from enum import StrEnum


class ChatFormat(StrEnum):
    """The value of `Submission.chat_format`."""

    AUTO = "auto"  # the model's own chat template, through vLLM's chat endpoint
    FORMATTER = "formatter"  # the developer's formatter, through the completions endpoint
    FORMATTER_DEFAULT = "formatter-default"  # left to the platform, but the model ships no chat template


def requested_chat_format(formatter_submitted: bool) -> ChatFormat | None:
    """What a new submission records: its own formatter, or None (intake decides)."""
    return ChatFormat.FORMATTER if formatter_submitted else None


def resolved_chat_format(requested: str | None, model_ships_chat_template: bool) -> ChatFormat:
    """The chat format intake records: a submitted formatter stays; otherwise the model's template when it
    ships one (a redeploy of a new revision decides again)."""
    if requested == ChatFormat.FORMATTER:
        return ChatFormat.FORMATTER
    return ChatFormat.AUTO if model_ships_chat_template else ChatFormat.FORMATTER_DEFAULT


def uses_model_chat_template(chat_format: str | None) -> bool:
    """Whether chats go through the chat endpoint with the model's template (a submission intake has not
    decided for, e.g. one from before chat formats existed, keeps its formatter)."""
    return chat_format == ChatFormat.AUTO
