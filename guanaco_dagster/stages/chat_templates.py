"""Whether a model folder ships a chat template, and writing the one the platform supplies when it does not.

transformers (and so vLLM) reads a chat template from `tokenizer_config.json` (`chat_template`: a string,
or a list of named templates), from `chat_template.jinja`, or from the older `chat_template.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE_FILENAME = "chat_template.jinja"
_TEMPLATE_FILES = (CHAT_TEMPLATE_FILENAME, "chat_template.json")


def _tokenizer_config_template(model_dir: Path) -> object:
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return config.get("chat_template") if isinstance(config, dict) else None


def ships_chat_template(model_dir: Path) -> bool:
    """True when the model folder carries a non-empty chat template that transformers would load."""
    if any((model_dir / name).is_file() and (model_dir / name).stat().st_size for name in _TEMPLATE_FILES):
        return True
    return bool(_tokenizer_config_template(model_dir))


def tokenizer_special_prefix(model_dir: Path) -> str:
    """The special tokens the tokenizer puts before any text (e.g. Llama's `<s>`), as text; "" when none.

    The completions endpoint adds them to every prompt, the chat endpoint leaves that to the template: a
    template that should see the same tokens as the completions path starts with this prefix.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    probe = "Hello"
    with_special = tokenizer(probe)["input_ids"]
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    if len(with_special) < len(plain) or with_special[len(with_special) - len(plain) :] != plain:
        return ""
    prefix = with_special[: len(with_special) - len(plain)]
    if not set(prefix) <= set(tokenizer.all_special_ids):
        return ""
    return "".join(tokenizer.convert_ids_to_tokens(prefix))


def write_chat_template(out_dir: Path, template: str) -> Path:
    """Write `template` as the artifact's `chat_template.jinja` (vLLM's tokenizer loads it from there)."""
    path = out_dir / CHAT_TEMPLATE_FILENAME
    path.write_text(template, encoding="utf-8")
    return path
