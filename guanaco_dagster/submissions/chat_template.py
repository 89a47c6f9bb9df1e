"""A Jinja chat template built from a prompt formatter, for models that ship none.

vLLM answers `/v1/chat/completions` only for tokenizers with a chat template. For a model without one, the
platform writes this template into the artifact, so chat requests (the openai SDK, the service's OpenAI
API) are laid out exactly as the submission's formatter lays out beta chats (`format_prompt`):

- the first message, when it is a `system` one, is the bot's memory (persona); a second `system` message
  right after it is the prompt (example chat); both may be absent (empty);
- `user` and `assistant` messages are the turns; the reply cue follows when a generation prompt is asked;
- `{bot_name}` and `{user_name}` come from the request's `chat_template_kwargs` (default "Bot", "User").
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path

from guanaco_dagster.stages.chat_templates import ships_chat_template, tokenizer_special_prefix
from guanaco_dagster.submissions.formatter import ChatTurn, PromptFormatter

DEFAULT_BOT_NAME = "Bot"
DEFAULT_USER_NAME = "User"

# The Jinja expression that holds each placeholder's value inside the template below.
_PLACEHOLDER_VALUES = {
    "bot_name": "names.bot",
    "user_name": "names.user",
    "memory": "parts.memory",
    "prompt": "parts.prompt",
    "message": "message['content']",
}

_PREAMBLE = (
    "{#- Built by Guanaco from the submission's prompt formatter. -#}\n"
    "{%- set names = namespace(bot=bot_name if bot_name is defined and bot_name else "
    f"{json.dumps(DEFAULT_BOT_NAME)}, user=user_name if user_name is defined and user_name else "
    f"{json.dumps(DEFAULT_USER_NAME)}) -%}}\n"
    "{%- set parts = namespace(memory='', prompt='', first=0) -%}\n"
    "{%- if messages and messages[0]['role'] == 'system' -%}\n"
    "{%- set parts.memory = messages[0]['content'] -%}{%- set parts.first = 1 -%}\n"
    "{%- if messages | length > 1 and messages[1]['role'] == 'system' -%}\n"
    "{%- set parts.prompt = messages[1]['content'] -%}{%- set parts.first = 2 -%}\n"
    "{%- endif -%}\n"
    "{%- endif -%}\n"
)
_ROLE_ERROR = (
    "this model's chat template takes system messages first (the bot's memory, then its example chat), "
    "then user and assistant messages only"
)


def _jinja_literal(text: str) -> str:
    """`text` output verbatim: as a string literal, nothing in it is parsed as Jinja and whitespace control
    cannot touch it. Jinja unescapes string literals like Python (\\n, \\", \\uXXXX), as JSON escapes them."""
    return "{{- " + json.dumps(text, ensure_ascii=False) + " -}}"


def _jinja_output(template: str) -> str:
    """A formatter template as Jinja output statements: its text as literals, its placeholders as
    expressions."""
    statements: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        if literal:
            statements.append(_jinja_literal(literal))
        if name is not None:
            statements.append("{{- " + _PLACEHOLDER_VALUES[name] + " -}}")
    return "".join(statements)


def formatter_chat_template(formatter: PromptFormatter, *, prefix: str = "") -> str:
    """The Jinja chat template that renders messages as `format_prompt` renders a conversation.

    `prefix` (e.g. `<s>`) starts every prompt: the special tokens the completions path adds by itself.
    """
    return (
        _PREAMBLE
        + (_jinja_literal(prefix) + "\n" if prefix else "")
        + _jinja_output(formatter.memory_template)
        + "\n"
        + _jinja_output(formatter.prompt_template)
        + "\n{%- for message in messages[parts.first:] -%}\n"
        + "{%- if message['role'] == 'user' -%}\n"
        + _jinja_output(formatter.user_template)
        + "\n{%- elif message['role'] == 'assistant' -%}\n"
        + _jinja_output(formatter.bot_template)
        + "\n{%- else -%}\n{{- raise_exception("
        + json.dumps(_ROLE_ERROR)
        + ") -}}\n{%- endif -%}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n"
        + _jinja_output(formatter.response_template)
        + "\n{%- endif -%}\n"
    )


def turn_messages(history: Sequence[ChatTurn]) -> list[dict[str, str]]:
    """Chat turns as OpenAI messages: the user's as `user`, the bot's as `assistant`."""
    return [
        {"role": "assistant" if turn.sender == "bot" else "user", "content": turn.message} for turn in history
    ]


def formatter_messages(*, memory: str, prompt: str, history: Sequence[ChatTurn]) -> list[dict[str, str]]:
    """A conversation as the messages `formatter_chat_template` reads: memory, prompt, then the turns."""
    return [
        {"role": "system", "content": memory},
        {"role": "system", "content": prompt},
        *turn_messages(history),
    ]


def formatter_template_kwargs(*, bot_name: str, user_name: str) -> dict[str, str]:
    """The `chat_template_kwargs` that name the bot and the user in `formatter_chat_template`."""
    return {"bot_name": bot_name, "user_name": user_name}


def platform_chat_template(model_dir: Path, formatter: PromptFormatter) -> str | None:
    """The template the platform supplies for `model_dir`: None when the model ships its own, else the one
    built from `formatter`, starting with the special tokens its tokenizer puts before any text."""
    if ships_chat_template(model_dir):
        return None
    return formatter_chat_template(formatter, prefix=tokenizer_special_prefix(model_dir))
