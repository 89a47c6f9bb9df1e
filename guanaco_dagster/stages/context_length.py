"""A model's own context limit, read from its config the way vLLM derives it, and the length to serve.

vLLM refuses to start when `--max-model-len` exceeds what the config allows ("User-specified max_model_len
(2048) is greater than the derived max_model_len (512)"), so the deploy stage serves the smaller of the
model's limit and the platform's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from inference.artifact import normalize_artifact_uri, parse_s3_uri

# The config keys vLLM reads a context length from (vllm/transformers_utils/model_arch_config_convertor.py),
# smallest wins; `model_max_length` in the config (Cohere) overrides them all.
CONTEXT_LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
# RoPE types whose max_position_embeddings is already the scaled length (vLLM applies no factor to them).
_PRESCALED_ROPE_TYPES = frozenset(
    {"default", "su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling"}
)


@dataclass(frozen=True)
class ContextLimit:
    """The longest sequence (prompt + reply, in tokens) a model supports, and which setting said so."""

    tokens: int
    source: str  # e.g. "max_position_embeddings" or "tokenizer model_max_length"


def _positive(value: Any) -> float | None:
    # bool is an int: `true` is no length.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


def _rope_factor(config: dict[str, Any]) -> float:
    rope = config.get("rope_scaling") or config.get("rope_parameters")
    if not isinstance(rope, dict):
        return 1.0
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    factor = _positive(rope.get("factor"))
    return factor if factor and rope_type not in _PRESCALED_ROPE_TYPES else 1.0


def model_context_limit(
    config: dict[str, Any], tokenizer_config: dict[str, Any] | None = None
) -> ContextLimit | None:
    """The model's context limit from config.json (and tokenizer_config.json); None when neither says."""
    # Multimodal configs keep the language model's settings under text_config, as vLLM reads them.
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    found = {key: value for key in CONTEXT_LENGTH_KEYS if (value := _positive(text_config.get(key)))}
    limit: tuple[float, str] | None = None
    if found:
        key = "model_max_length" if "model_max_length" in found else min(found, key=found.__getitem__)
        limit = (found[key] * _rope_factor(text_config), key)
    tokenizer_limit = _positive((tokenizer_config or {}).get("model_max_length"))
    if tokenizer_limit is not None and (limit is None or tokenizer_limit < limit[0]):
        limit = (tokenizer_limit, "tokenizer model_max_length")
    return ContextLimit(int(limit[0]), limit[1]) if limit is not None else None


def served_max_model_len(model_limit: ContextLimit | None, platform_limit: int) -> int:
    """The context length to serve: the platform's, lowered to the model's own limit when that is smaller."""
    return min(model_limit.tokens, platform_limit) if model_limit is not None else platform_limit


def cached_model_max_len(client: Any, artifact_uri: str, platform_limit: int) -> int:
    """The context length to serve the model cached at `artifact_uri` with (deploys, heals and restarts)."""
    return served_max_model_len(artifact_context_limit(client, artifact_uri), platform_limit)


def _read_json_object(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    # Imported here: the intake checks read configs from disk and should not load botocore.
    from botocore.exceptions import ClientError

    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    data = json.loads(body)
    return data if isinstance(data, dict) else None


def artifact_context_limit(client: Any, artifact_uri: str) -> ContextLimit | None:
    """The context limit of the model cached at `artifact_uri` (its config files, a few KB from S3)."""
    bucket, prefix = parse_s3_uri(normalize_artifact_uri(artifact_uri))
    config = _read_json_object(client, bucket, prefix + "config.json") or {}
    return model_context_limit(config, _read_json_object(client, bucket, prefix + "tokenizer_config.json"))
