"""Prompt layouts a developer can pick with `guanaco submit --formatter NAME`.

Each preset is a partial `PromptFormatter` body; the service validates it like any other formatter.
"""

from __future__ import annotations

FORMATTER_PRESETS: dict[str, dict[str, str]] = {
    "pygmalion": {},  # the service's default (Chai's)
    "vicuna": {
        "memory_template": "SYSTEM: You are {bot_name}. {memory}\n",
        "prompt_template": "{prompt}\n",
        "bot_template": "ASSISTANT: {message}\n",
        "user_template": "USER: {message}\n",
        "response_template": "ASSISTANT:",
    },
    "chatml": {
        "memory_template": "<|im_start|>system\nYou are {bot_name}. {memory}<|im_end|>\n",
        "prompt_template": "<|im_start|>system\n{prompt}<|im_end|>\n",
        "bot_template": "<|im_start|>assistant\n{message}<|im_end|>\n",
        "user_template": "<|im_start|>user\n{message}<|im_end|>\n",
        "response_template": "<|im_start|>assistant\n",
    },
}
