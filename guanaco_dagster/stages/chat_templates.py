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
    probe = "Hello"
    fast = _fast_tokenizer(model_dir)
    if fast is not None:
        with_special = fast.encode(probe, add_special_tokens=True).ids
        plain = fast.encode(probe, add_special_tokens=False).ids
        special_ids = {i for i, token in fast.get_added_tokens_decoder().items() if token.special}
        to_token = fast.id_to_token
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        with_special = tokenizer(probe)["input_ids"]
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        special_ids = set(tokenizer.all_special_ids)

        def to_token(token_id: int) -> str:
            return tokenizer.convert_ids_to_tokens(token_id)

    if len(with_special) < len(plain) or with_special[len(with_special) - len(plain) :] != plain:
        return ""
    prefix = with_special[: len(with_special) - len(plain)]
    if not set(prefix) <= special_ids:
        return ""
    return "".join(to_token(token_id) for token_id in prefix)


def _fast_tokenizer(model_dir: Path):  # noqa: ANN202 - tokenizers.Tokenizer, imported lazily
    """tokenizer.json loaded by the `tokenizers` library (~0.1 s, no transformers import), when it is what
    transformers would use as is: None when there is none, or when tokenizer_config.json asks transformers
    to rebuild its special-token post-processor (`add_bos_token` / `add_eos_token`)."""
    if not (model_dir / "tokenizer.json").is_file():
        return None
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        config = {}
    if isinstance(config, dict) and ({"add_bos_token", "add_eos_token"} & config.keys()):
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def write_chat_template(out_dir: Path, template: str) -> Path:
    """Write `template` as the artifact's `chat_template.jinja` (vLLM's tokenizer loads it from there)."""
    path = out_dir / CHAT_TEMPLATE_FILENAME
    path.write_text(template, encoding="utf-8")
    return path
