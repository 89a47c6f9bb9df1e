"""Sanity checks on a submitted model, each failing with a reason the developer can act on."""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, Field

from guanaco_dagster.stages.chat_templates import ships_chat_template
from guanaco_dagster.stages.context_length import model_context_limit
from guanaco_dagster.stages.finite_scan import non_finite_tensors
from guanaco_dagster.stages.vllm_architectures import served_architectures

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
    context_length: int | None  # the model's own limit (config.json), None when it states none
    context_length_source: str | None
    finite_scan_s: float  # the NaN/Inf scan over every weight byte
    chat_template: bool = False  # the model ships a chat template (tokenizer_config.json or a file)

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


# Bits per element of every safetensors dtype (safetensors' Rust crate, 0.8).
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "U16": 16, "I16": 16, "F16": 16, "BF16": 16,
    "U32": 32, "I32": 32, "F32": 32,
    "U64": 64, "I64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
MAX_HEADER_BYTES = 100 * 1024**2


def _corrupt(path: Path, detail: str) -> WeightCheckError:
    return WeightCheckError(
        f"{path.name} is corrupt: {detail}. Re-save the model with `save_pretrained(dir, "
        "safe_serialization=True)` and push it again."
    )


def _tensor_bytes(path: Path, name: str, meta: object) -> int:
    """The bytes a tensor's dtype and shape need; WeightCheckError when its entry is malformed."""
    if not isinstance(meta, dict):
        raise _corrupt(path, f"the header entry of tensor '{name}' is not an object")
    dtype, shape, offsets = meta.get("dtype"), meta.get("shape"), meta.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise _corrupt(path, f"tensor '{name}' has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _corrupt(path, f"tensor '{name}' has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise _corrupt(path, f"tensor '{name}' has invalid data offsets {offsets!r}")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    span = offsets[1] - offsets[0]
    if bits != span * 8:
        raise _corrupt(
            path,
            f"tensor '{name}' is declared {dtype} {shape} ({bits / 8:,.0f} bytes) but spans {span:,} bytes "
            "of the file",
        )
    return span


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """Parse and validate a .safetensors header without loading tensors.

    Every tensor's dtype × shape must equal its byte span, and the spans must tile the data section
    exactly (no gap, no overlap, nothing past the end): a header that lies is refused as corrupt, naming
    the file and the tensor, before anything trusts its shapes. Raises WeightCheckError.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise WeightCheckError(f"{path.name} is truncated (only {size} bytes): re-upload it.")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(size - 8, MAX_HEADER_BYTES):
            raise WeightCheckError(f"{path.name} is not a valid safetensors file (bad header length).")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise WeightCheckError(f"{path.name} has a corrupt safetensors header: re-upload it.") from error
    if not isinstance(header, dict):
        raise WeightCheckError(f"{path.name} has a corrupt safetensors header: re-upload it.")
    tensors = {name: meta for name, meta in header.items() if name != "__metadata__"}
    for name, meta in tensors.items():
        _tensor_bytes(path, name, meta)
    data_size = size - 8 - header_len
    expected_start = 0
    for name, meta in sorted(tensors.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        start, end = meta["data_offsets"]
        if start != expected_start:
            what = "overlaps the tensor before it" if start < expected_start else "leaves a gap before it"
            raise _corrupt(path, f"tensor '{name}' {what} (starts at byte {start:,}, not {expected_start:,})")
        expected_start = end
    if expected_start != data_size:
        raise WeightCheckError(
            f"{path.name} is truncated or corrupt: its header describes {8 + header_len + expected_start} "
            f"bytes but the file has {size}. Re-upload it."
        )
    return tensors


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


def _check_architecture(config: dict) -> str:
    architectures = config.get("architectures") or []
    if not architectures or not isinstance(architectures, list):
        raise WeightCheckError(
            "config.json has no 'architectures' entry: save the model with save_pretrained."
        )
    architecture = str(architectures[0])
    served = served_architectures()
    if architecture in served.text_generation:
        return architecture
    kind = served.other_kinds.get(architecture)
    cause = (
        f"architecture '{architecture}' is {kind} in vLLM, not a text-generation one: the platform serves "
        "chat models only."
        if kind
        else f"architecture '{architecture}' is not served by vLLM {served.vllm_version}."
    )
    raise WeightCheckError(
        f"{cause} Submit a causal language model; vLLM {served.vllm_version} serves "
        f"{len(served.text_generation)} text-generation architectures, among them "
        f"{', '.join(served.examples())}."
    )


@dataclass(frozen=True)
class _Shard:
    path: Path
    tensors: dict[str, dict]


def _read_shards(model_dir: Path) -> list[_Shard]:
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        raise WeightCheckError("no .safetensors weights in the download.")
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.exists():
        expected = set(json.loads(index_path.read_text()).get("weight_map", {}).values())
        missing = expected - {p.name for p in shards}
        if missing:
            raise WeightCheckError(f"shards listed in the index are missing: {', '.join(sorted(missing))}.")
    return [_Shard(shard, read_safetensors_header(shard)) for shard in shards]


def _check_finite(shards: list[_Shard]) -> None:
    for shard in shards:
        broken = non_finite_tensors(shard.path, shard.tensors)
        if broken:
            raise WeightCheckError(
                f"{shard.path.name} holds NaN or Inf values in tensor '{broken[0]}': a model with "
                "non-finite weights answers with nothing. Check `torch.isfinite(t).all()` for every tensor "
                "(a diverged fine-tune or an overflowing fp16 conversion are the usual causes), fix the "
                "weights and push them again."
            )


def _tokenizer_unloadable(error: Exception) -> WeightCheckError:
    return WeightCheckError(
        f"the tokenizer does not load ({error}): check that tokenizer.json and tokenizer_config.json "
        "load with `AutoTokenizer.from_pretrained(dir)` locally, then push them again."
    )


def _check_fast_tokenizer(model_dir: Path) -> tuple[str, int, list[int]]:
    """Load tokenizer.json with the `tokenizers` library (what transformers' fast tokenizers wrap): no
    transformers or torch import, ~0.1 s instead of several seconds of CPU."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        ids = tokenizer.encode("Hello, how are you?").ids
    except Exception as error:  # noqa: BLE001 - any failure means vLLM would fail too
        raise _tokenizer_unloadable(error) from error
    tokenizer_config = _read_json(model_dir / "tokenizer_config.json")
    # transformers adds the tokens tokenizer_config.json declares on top of tokenizer.json's.
    declared = tokenizer_config.get("added_tokens_decoder")
    extra = {str(i) for i in declared} if isinstance(declared, dict) else set()
    known = {str(i) for i in tokenizer.get_vocab(with_added_tokens=True).values()}
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True) + len(extra - known)
    class_name = str(tokenizer_config.get("tokenizer_class") or "PreTrainedTokenizerFast")
    return class_name, vocab_size, ids


def _check_transformers_tokenizer(model_dir: Path) -> tuple[str, int, list[int]]:
    """A tokenizer without tokenizer.json (sentencepiece or vocabulary files): transformers builds it."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        ids = tokenizer("Hello, how are you?")["input_ids"]
    except Exception as error:  # noqa: BLE001 - any failure means vLLM would fail too
        raise _tokenizer_unloadable(error) from error
    return type(tokenizer).__name__, len(tokenizer), ids


def _check_tokenizer(model_dir: Path) -> tuple[str, int]:
    if not any((model_dir / name).exists() for name in TOKENIZER_FILES):
        raise WeightCheckError("no tokenizer files found: push tokenizer.json and tokenizer_config.json.")
    if (model_dir / "tokenizer.json").is_file():
        class_name, vocab_size, ids = _check_fast_tokenizer(model_dir)
    else:
        class_name, vocab_size, ids = _check_transformers_tokenizer(model_dir)
    if not ids:
        raise WeightCheckError("the tokenizer turns text into no tokens: check tokenizer.json.")
    return class_name, vocab_size


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def check_model_dir(model_dir: Path, *, max_parameters: int, max_weight_bytes: int) -> WeightReport:
    """Run every sanity check on a downloaded model folder; return what was learned.

    Cheap checks come first; the scan for NaN/Inf reads every weight byte, so it runs last.
    """
    config = _load_config(model_dir)
    _check_no_remote_code(config, model_dir)
    architecture = _check_architecture(config)
    shards = _read_shards(model_dir)
    tensors = [meta for shard in shards for meta in shard.tensors.values()]
    parameters = sum(math.prod(meta["shape"]) for meta in tensors)
    weight_bytes = sum(shard.path.stat().st_size for shard in shards)
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
    started = time.perf_counter()
    _check_finite(shards)
    finite_scan_s = time.perf_counter() - started
    context = model_context_limit(config, _read_json(model_dir / "tokenizer_config.json"))
    return WeightReport(
        architecture=architecture,
        parameter_count=parameters,
        weight_bytes=weight_bytes,
        dtypes=sorted({meta["dtype"] for meta in tensors}),
        tensor_count=len(tensors),
        shard_count=len(shards),
        tokenizer_class=tokenizer_class,
        tokenizer_vocab_size=tokenizer_vocab,
        config_vocab_size=config_vocab,
        context_length=context.tokens if context else None,
        context_length_source=context.source if context else None,
        finite_scan_s=finite_scan_s,
        chat_template=ships_chat_template(model_dir),
    )
