"""Sanity checks on a submitted model, each failing with a reason the developer can act on."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

from pydantic import BaseModel, Field

PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tokenizer_config.json")


def human_bytes(num_bytes: int) -> str:
    """Bytes in the largest binary unit that keeps a readable number (e.g. '40.0 GiB', '512 B')."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


class IntakeLimits(BaseModel):
    """How big a submitted model may be (`GUANACO_MAX_*`)."""

    max_parameters: int = Field(default=15_000_000_000, gt=0, description="Largest parameter count accepted.")
    max_weight_bytes: int = Field(default=40 * 1024**3, gt=0, description="Largest total weight size, bytes.")


class WeightCheckError(ValueError):
    """The submission's files are unusable or unsafe; the message says how to fix them."""


@dataclass(frozen=True)
class WeightReport:
    """What the checks learned about a model, for metadata and the store."""

    architecture: str
    parameter_count: int
    weight_bytes: int
    dtypes: list[str]
    tensor_count: int
    shard_count: int
    tokenizer_class: str
    tokenizer_vocab_size: int
    config_vocab_size: int
    architecture_checked: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _weights_in(listing: dict[str, int], patterns: tuple[str, ...]) -> list[str]:
    return [name for name in listing if any(fnmatch(Path(name).name, p) for p in patterns)]


def check_repo_listing(listing: dict[str, int], *, max_weight_bytes: int | None = None) -> None:
    """Vet a repository's file listing (name → bytes) before anything is downloaded."""
    if "config.json" not in listing:
        raise WeightCheckError("config.json is missing from the repository: push the model's config.")
    safetensors = _weights_in(listing, ("*.safetensors",))
    if not safetensors:
        pickles = _weights_in(listing, PICKLE_PATTERNS)
        if pickles:
            raise WeightCheckError(
                f"only pickle checkpoints found ({', '.join(sorted(pickles)[:3])}): loading them can run "
                "arbitrary code, so they are refused. Save the model with "
                "`model.save_pretrained(dir, safe_serialization=True)` and push the .safetensors files."
            )
        raise WeightCheckError("no weights found: the repository has no .safetensors files.")
    total = sum(listing[name] for name in safetensors)
    if max_weight_bytes is not None and total > max_weight_bytes:
        raise WeightCheckError(
            f"weights are {human_bytes(total)}, over the {human_bytes(max_weight_bytes)} limit: "
            "submit a smaller or quantized model."
        )


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """Parse a .safetensors header without loading tensors; raise WeightCheckError if the file is damaged."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise WeightCheckError(f"{path.name} is truncated (only {size} bytes): re-upload it.")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(size - 8, 100 * 1024**2):
            raise WeightCheckError(f"{path.name} is not a valid safetensors file (bad header length).")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise WeightCheckError(f"{path.name} has a corrupt safetensors header: re-upload it.") from error
    tensors = {name: meta for name, meta in header.items() if name != "__metadata__"}
    data_end = max((meta["data_offsets"][1] for meta in tensors.values()), default=0)
    if 8 + header_len + data_end != size:
        raise WeightCheckError(
            f"{path.name} is truncated or corrupt: its header describes {8 + header_len + data_end} bytes "
            f"but the file has {size}. Re-upload it."
        )
    return tensors


@cache
def supported_architectures() -> frozenset[str] | None:
    """Architectures the installed vLLM serves; None when vLLM is not installed in this process."""
    try:
        from vllm.model_executor.models.registry import ModelRegistry
    except ImportError:
        return None
    return frozenset(ModelRegistry.get_supported_archs())


def _load_config(model_dir: Path) -> dict:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WeightCheckError(f"config.json does not parse: {error}. Fix the file and resubmit.") from error
    if not isinstance(config, dict):
        raise WeightCheckError("config.json must be a JSON object.")
    return config


def _check_no_remote_code(config: dict, model_dir: Path) -> None:
    tokenizer_config_path = model_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_config_path.read_text()) if tokenizer_config_path.exists() else {}
    if "auto_map" in config or "auto_map" in tokenizer_config:
        raise WeightCheckError(
            "the model needs trust_remote_code (config has 'auto_map'): custom code is not run on the "
            "platform. Use an architecture built into transformers and vLLM."
        )


def _check_architecture(config: dict) -> tuple[str, bool]:
    architectures = config.get("architectures") or []
    if not architectures:
        raise WeightCheckError(
            "config.json has no 'architectures' entry: save the model with save_pretrained."
        )
    architecture = architectures[0]
    supported = supported_architectures()
    if supported is not None and architecture not in supported:
        raise WeightCheckError(
            f"architecture '{architecture}' is not served by vLLM: use a supported one such as "
            "LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM."
        )
    return architecture, supported is not None


def _count_weights(model_dir: Path) -> tuple[int, int, set[str], int, int]:
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        raise WeightCheckError("no .safetensors weights in the download.")
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.exists():
        expected = set(json.loads(index_path.read_text()).get("weight_map", {}).values())
        missing = expected - {p.name for p in shards}
        if missing:
            raise WeightCheckError(f"shards listed in the index are missing: {', '.join(sorted(missing))}.")
    parameters = weight_bytes = tensors = 0
    dtypes: set[str] = set()
    for shard in shards:
        for meta in read_safetensors_header(shard).values():
            parameters += math.prod(meta["shape"])
            dtypes.add(meta["dtype"])
            tensors += 1
        weight_bytes += shard.stat().st_size
    return parameters, weight_bytes, dtypes, tensors, len(shards)


def _check_tokenizer(model_dir: Path) -> tuple[str, int]:
    if not any((model_dir / name).exists() for name in TOKENIZER_FILES):
        raise WeightCheckError("no tokenizer files found: push tokenizer.json and tokenizer_config.json.")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        ids = tokenizer("Hello, how are you?")["input_ids"]
    except Exception as error:  # noqa: BLE001 - any failure means vLLM would fail too
        raise WeightCheckError(
            f"the tokenizer does not load ({error}): check that tokenizer.json and tokenizer_config.json "
            "load with `AutoTokenizer.from_pretrained(dir)` locally, then push them again."
        ) from error
    if not ids:
        raise WeightCheckError("the tokenizer turns text into no tokens: check tokenizer.json.")
    return type(tokenizer).__name__, len(tokenizer)


def check_model_dir(model_dir: Path, *, max_parameters: int, max_weight_bytes: int) -> WeightReport:
    """Run every sanity check on a downloaded model folder; return what was learned."""
    config = _load_config(model_dir)
    _check_no_remote_code(config, model_dir)
    architecture, architecture_checked = _check_architecture(config)
    parameters, weight_bytes, dtypes, tensors, shards = _count_weights(model_dir)
    if parameters > max_parameters:
        raise WeightCheckError(
            f"the model has {parameters:,} parameters, over the {max_parameters:,} limit: "
            "submit a smaller one."
        )
    if weight_bytes > max_weight_bytes:
        raise WeightCheckError(
            f"weights are {human_bytes(weight_bytes)}, over the {human_bytes(max_weight_bytes)} limit: "
            "submit a smaller or quantized model."
        )
    tokenizer_class, tokenizer_vocab = _check_tokenizer(model_dir)
    config_vocab = int(config.get("vocab_size") or 0)
    if config_vocab and tokenizer_vocab > config_vocab:
        raise WeightCheckError(
            f"the tokenizer has {tokenizer_vocab} tokens but the model's vocab_size is {config_vocab}: "
            "resize the embeddings or fix the tokenizer."
        )
    return WeightReport(
        architecture=architecture,
        parameter_count=parameters,
        weight_bytes=weight_bytes,
        dtypes=sorted(dtypes),
        tensor_count=tensors,
        shard_count=shards,
        tokenizer_class=tokenizer_class,
        tokenizer_vocab_size=tokenizer_vocab,
        config_vocab_size=config_vocab,
        architecture_checked=architecture_checked,
    )
