"""Prompt layouts a developer can pick with `guanaco submit --formatter NAME`.

Each preset is a partial `PromptFormatter` body (the service validates it like any other formatter) and the
stopping words that end a reply in that layout, sent unless `--stop` is given. `auto` sends no formatter:
the platform then uses the model's own chat template, or Chai's default layout when the model ships none.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FormatterPreset:
    layout: dict[str, str] | None  # None: no formatter, the platform decides (`auto`)
    stopping_words: tuple[str, ...] = ()  # empty: the service's default


FORMATTER_PRESETS: dict[str, FormatterPreset] = {
    "auto": FormatterPreset(layout=None),
    # Chai's default: one line per turn, so the newline ends the reply where the next speaker's line starts.
    "pygmalion": FormatterPreset(layout={}, stopping_words=("\n",)),
    "vicuna": FormatterPreset(
        layout={
            "memory_template": "SYSTEM: You are {bot_name}. {memory}\n",
            "prompt_template": "{prompt}\n",
            "bot_template": "ASSISTANT: {message}\n",
            "user_template": "USER: {message}\n",
            "response_template": "ASSISTANT:",
        },
        stopping_words=("\nUSER:",),
    ),
    "chatml": FormatterPreset(
        layout={
            "memory_template": "<|im_start|>system\nYou are {bot_name}. {memory}<|im_end|>\n",
            "prompt_template": "<|im_start|>system\n{prompt}<|im_end|>\n",
            "bot_template": "<|im_start|>assistant\n{message}<|im_end|>\n",
            "user_template": "<|im_start|>user\n{message}<|im_end|>\n",
            "response_template": "<|im_start|>assistant\n",
        },
        stopping_words=("<|im_end|>",),
    ),
}
