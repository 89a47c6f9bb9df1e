"""Chai-style prompt formatting: templates, sampling parameters, and a prompt that fits the context.

A submission's `PromptFormatter` turns a bot (memory + prompt), the chat so far, and the two names into
the single string the model completes. Text written by bots' creators and by users is inserted verbatim:
only the formatter's own templates are parsed, so braces in a user message can never break formatting.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Which placeholders each template may use, and which it must use. Per template rather than one global
# set, because a `{message}` in the memory template has no value to take and would render as nothing.
_NAME_PLACEHOLDERS = ("bot_name", "user_name")
_TEMPLATE_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "memory_template": (*_NAME_PLACEHOLDERS, "memory"),
    "prompt_template": (*_NAME_PLACEHOLDERS, "prompt"),
    "bot_template": (*_NAME_PLACEHOLDERS, "message"),
    "user_template": (*_NAME_PLACEHOLDERS, "message"),
    "response_template": _NAME_PLACEHOLDERS,
}
_REQUIRED_PLACEHOLDER: dict[str, str] = {
    "memory_template": "memory",
    "prompt_template": "prompt",
    "bot_template": "message",
    "user_template": "message",
}


# Templates are short layouts, not documents: Chai's defaults are under 40 characters each.
MAX_TEMPLATE_CHARS = 2_000
# What one reply may generate in all (best_of candidates × max_output_tokens each): bounds a request's work.
MAX_GENERATED_TOKENS = 4_096


def refuse_control_characters(field_name: str, value: str, *, allowed: str = "") -> str:
    """`value` unchanged, or ValueError naming `field_name` when it holds a control character (NUL, ESC, …)
    other than those in `allowed`."""
    for char in value:
        if (ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0) and char not in allowed:
            raise ValueError(f"{field_name} may not contain control characters (found {char!r})")
    return value


def _placeholders(field_name: str, template: str) -> list[str]:
    """The placeholder names in `template`; ValueError naming `field_name` when it is not a valid template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"{field_name} is not a valid template ({exc}); write a literal brace as '{{{{' or '}}}}'"
        ) from None
    names: list[str] = []
    for _literal, name, format_spec, conversion in parsed:
        if name is None:
            continue
        if format_spec or conversion:
            raise ValueError(
                f"{field_name}: placeholder {{{name}}} may not carry a format spec or conversion"
            )
        names.append(name)
    return names


def _check_template(field_name: str, template: str) -> str:
    """Validate one template against the placeholders its field allows and requires."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(
            f"{field_name} is {len(template):,} characters, over the {MAX_TEMPLATE_CHARS:,} limit: "
            "a template lays out the prompt, the persona goes in memory"
        )
    refuse_control_characters(field_name, template, allowed="\n\t")
    allowed = _TEMPLATE_PLACEHOLDERS[field_name]
    names = _placeholders(field_name, template)
    for name in names:
        if name not in allowed:
            allowed_text = ", ".join(f"{{{a}}}" for a in allowed)
            raise ValueError(f"{field_name} may not use {{{name}}}; allowed placeholders: {allowed_text}")
    required = _REQUIRED_PLACEHOLDER.get(field_name)
    if required is not None and required not in names:
        raise ValueError(f"{field_name} must contain {{{required}}}")
    return template


def _render(template: str, values: Mapping[str, str]) -> str:
    """Fill a validated template; values are inserted verbatim, never parsed as format strings."""
    parts: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(values[name])
    return "".join(parts)


class PromptFormatter(BaseModel):
    """How a submission lays out memory, prompt, chat turns and the reply cue; defaults are Chai's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_template: str = Field(
        default="{bot_name}'s Persona: {memory}\n####\n",
        description="Wraps the bot's permanent memory (persona). Must contain {memory}.",
    )
    prompt_template: str = Field(
        default="{prompt}\n<START>\n",
        description="Wraps the bot's prompt (example chat). Must contain {prompt}.",
    )
    bot_template: str = Field(
        default="{bot_name}: {message}\n", description="One bot turn. Must contain {message}."
    )
    user_template: str = Field(
        default="{user_name}: {message}\n", description="One user turn. Must contain {message}."
    )
    response_template: str = Field(
        default="{bot_name}:", description="Appended last; cues the model to answer as the bot."
    )

    @field_validator(*_TEMPLATE_PLACEHOLDERS)
    @classmethod
    def _validate_template(cls, template: str, info: ValidationInfo) -> str:
        return _check_template(info.field_name, template)


StoppingWord = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class GenerationParams(BaseModel):
    """Sampling settings a developer submits with a model; `to_completion_kwargs` feeds vLLM."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=-1, le=1000, description="-1 disables top-k sampling.")
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    # Chai's clients send it; vLLM applies it multiplicatively (1.0 = off).
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=2.0)
    stopping_words: list[StoppingWord] = Field(default_factory=lambda: ["\n"], max_length=16)
    max_input_tokens: int = Field(default=1024, ge=64, le=32768, description="Prompt budget, in tokens.")
    max_output_tokens: int = Field(default=64, ge=1, le=2048)
    best_of: int = Field(default=1, ge=1, le=16, description="Candidate replies generated per request.")

    @field_validator("top_k")
    @classmethod
    def _top_k_not_zero(cls, top_k: int) -> int:
        # vLLM reads 0 as "disabled" in some versions and rejects it in others: accept only -1 for that.
        if top_k == 0:
            raise ValueError("top_k must be -1 (disabled) or between 1 and 1000")
        return top_k

    @model_validator(mode="after")
    def _bounded_work_per_reply(self) -> GenerationParams:
        generated = self.best_of * self.max_output_tokens
        if generated > MAX_GENERATED_TOKENS:
            raise ValueError(
                f"best_of × max_output_tokens is {self.best_of} × {self.max_output_tokens} = {generated:,} "
                f"tokens per reply, over the {MAX_GENERATED_TOKENS:,} limit: lower one of them"
            )
        return self

    def to_completion_kwargs(self) -> dict[str, object]:
        """The body fields of an OpenAI/vLLM `/v1/completions` request (all but `model` and `prompt`)."""
        # max_input_tokens is absent on purpose: it bounds the prompt we build, not the server's work.
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "repetition_penalty": self.repetition_penalty,
            "stop": list(self.stopping_words),
            "max_tokens": self.max_output_tokens,
            "n": self.best_of,
        }


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation, from the user or the bot."""

    sender: Literal["user", "bot"]
    message: str

    def __post_init__(self) -> None:
        if self.sender not in ("user", "bot"):
            raise ValueError(f"ChatTurn sender must be 'user' or 'bot', not {self.sender!r}")


@dataclass(frozen=True)
class _PromptParts:
    """The pieces of a prompt that truncation shortens, before templates are applied."""

    memory: str
    prompt: str
    turns: tuple[ChatTurn, ...]

    def render(self, formatter: PromptFormatter, names: Mapping[str, str]) -> str:
        blocks = [
            _render(formatter.memory_template, {**names, "memory": self.memory}),
            _render(formatter.prompt_template, {**names, "prompt": self.prompt}),
        ]
        for turn in self.turns:
            template = formatter.bot_template if turn.sender == "bot" else formatter.user_template
            blocks.append(_render(template, {**names, "message": turn.message}))
        blocks.append(_render(formatter.response_template, names))
        return "".join(blocks)


def _largest_fitting(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest n in [low, high] with fits(n), assuming fits is monotone (True up to some n)."""
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def format_prompt(
    formatter: PromptFormatter,
    *,
    memory: str,
    prompt: str,
    bot_name: str,
    user_name: str,
    history: Sequence[ChatTurn],
    count_tokens: Callable[[str], int],
    max_input_tokens: int,
) -> str:
    """The prompt the model completes, shortened to at most `max_input_tokens` per `count_tokens`.

    `{bot_name}` and `{user_name}` are filled in every template; memory, prompt and messages go in
    verbatim. When the whole prompt is too long, shorten in this order, stopping as soon as it fits:
    1. drop the oldest turns, always keeping the newest one;
    2. cut the memory from its end (a persona states its essentials first);
    3. cut the prompt from its end;
    4. cut the newest turn from its start (its last words are what the bot answers).
    Raises ValueError when even the templates alone exceed the budget.
    """
    if max_input_tokens < 1:
        raise ValueError(f"max_input_tokens must be at least 1, got {max_input_tokens}")
    names = {"bot_name": bot_name, "user_name": user_name}

    def fits(parts: _PromptParts) -> bool:
        return count_tokens(parts.render(formatter, names)) <= max_input_tokens

    parts, done = _shorten(_PromptParts(memory=memory, prompt=prompt, turns=tuple(history)), fits)
    if done:
        return parts.render(formatter, names)
    raise ValueError(
        f"max_input_tokens={max_input_tokens} is too small for the formatter's templates alone "
        f"({count_tokens(parts.render(formatter, names))} tokens with empty memory, prompt and message)"
    )


_Fits = Callable[[_PromptParts], bool]


def _shorten(parts: _PromptParts, fits: _Fits) -> tuple[_PromptParts, bool]:
    """`parts` shortened in `format_prompt`'s order until it fits; whether it does in the end."""
    if fits(parts):
        return parts, True
    for shorten in (_drop_oldest_turns, _cut_memory, _cut_prompt, _cut_newest_turn):
        parts, done = shorten(parts, fits)
        if done:
            return parts, True
    return parts, False


def fit_conversation(
    *,
    memory: str,
    prompt: str,
    history: Sequence[ChatTurn],
    fits: Callable[[str, str, tuple[ChatTurn, ...]], bool],
) -> tuple[str, str, tuple[ChatTurn, ...]]:
    """(memory, prompt, turns) shortened as `format_prompt` shortens them, until `fits(memory, prompt,
    turns)` holds: for prompts laid out by something else than a formatter (a model's chat template).
    Raises ValueError when even empty memory, prompt and message do not fit."""
    parts, done = _shorten(
        _PromptParts(memory=memory, prompt=prompt, turns=tuple(history)),
        lambda candidate: fits(candidate.memory, candidate.prompt, candidate.turns),
    )
    if not done:
        raise ValueError("the prompt budget (max_input_tokens) is too small for the chat template alone")
    return parts.memory, parts.prompt, parts.turns


def _drop_oldest_turns(parts: _PromptParts, fits: _Fits) -> tuple[_PromptParts, bool]:
    """Keep as many of the newest turns as fit (at least one); report whether the result fits."""
    turns = parts.turns

    def with_newest(count: int) -> _PromptParts:
        return replace(parts, turns=turns[len(turns) - count :])

    kept = _largest_fitting(lambda count: fits(with_newest(count)), 1, len(turns))
    if kept is None:
        return with_newest(min(1, len(turns))), False
    return with_newest(kept), True


def _cut_memory(parts: _PromptParts, fits: _Fits) -> tuple[_PromptParts, bool]:
    """Keep the longest start of the memory that fits; empty memory when none does."""
    memory = parts.memory
    kept = _largest_fitting(lambda length: fits(replace(parts, memory=memory[:length])), 0, len(memory))
    return replace(parts, memory=memory[: kept or 0]), kept is not None


def _cut_prompt(parts: _PromptParts, fits: _Fits) -> tuple[_PromptParts, bool]:
    """Keep the longest start of the prompt that fits; empty prompt when none does."""
    prompt = parts.prompt
    kept = _largest_fitting(lambda length: fits(replace(parts, prompt=prompt[:length])), 0, len(prompt))
    return replace(parts, prompt=prompt[: kept or 0]), kept is not None


def _cut_newest_turn(parts: _PromptParts, fits: _Fits) -> tuple[_PromptParts, bool]:
    """Keep the longest end of the newest (only remaining) turn's message that fits."""
    if not parts.turns:
        return parts, False
    newest = parts.turns[-1]

    def with_last(length: int) -> _PromptParts:
        message = newest.message[len(newest.message) - length :]
        return replace(parts, turns=(ChatTurn(newest.sender, message),))

    kept = _largest_fitting(lambda length: fits(with_last(length)), 0, len(newest.message))
    return with_last(kept or 0), kept is not None
