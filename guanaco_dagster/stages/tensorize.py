"""Turn a downloaded Hugging Face model folder into a tensorizer artifact folder.

The folder holds `model.tensors` (the safetensors state dict, serialized with tensorizer's
`write_state_dict`) plus the config, generation config and tokenizer files vLLM reads from a local
directory. Nothing here knows about Dagster.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from guanaco_dagster.stages.chat_templates import write_chat_template
from inference.artifact import WEIGHTS_FILENAME

SAFETENSORS_INDEX = "model.safetensors.index.json"

# Files vLLM needs besides the weights: config, generation defaults, tokenizer and chat templates.
# Patterns match file names relative to the model folder; code (*.py) and weights never qualify.
MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "*.tiktoken",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
    "additional_chat_templates/*.jinja",
    "preprocessor_config.json",
    "processor_config.json",
)
EXCLUDED_SUFFIXES = (".py", ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")


class TensorizeError(RuntimeError):
    """The model folder cannot be tensorized, or the written artifact does not read back identically."""


@dataclass(frozen=True)
class TensorizedArtifact:
    """What `tensorize_model` wrote and how long it took."""

    out_dir: Path
    weights_path: Path
    sha256: str
    weights_bytes: int
    copied_files: list[str] = field(default_factory=list)
    serialize_s: float = 0.0
    verify_s: float = 0.0
    tensor_count: int = 0
    supplied_chat_template: bool = False  # the platform wrote chat_template.jinja (the model ships none)


TensorSpecs = dict[str, tuple[tuple[int, ...], str]]


def find_safetensors_files(model_dir: Path) -> list[Path]:
    """The safetensors shards of a model folder: the index's shards, else model.safetensors, else all."""
    index_path = model_dir / SAFETENSORS_INDEX
    if index_path.is_file():
        weight_map = json.loads(index_path.read_text())["weight_map"]
        shards = [model_dir / name for name in sorted(set(weight_map.values()))]
        missing = [shard.name for shard in shards if not shard.is_file()]
        if missing:
            raise TensorizeError(f"{model_dir} is incomplete: shards {missing} named in {SAFETENSORS_INDEX}")
        return shards
    if (model_dir / "model.safetensors").is_file():
        return [model_dir / "model.safetensors"]
    # Some repositories ship a second, differently named copy (consolidated*.safetensors): skip it.
    shards = sorted(p for p in model_dir.glob("*.safetensors") if not p.name.startswith("consolidated"))
    if not shards:
        raise TensorizeError(
            f"no safetensors weights in {model_dir}: only .safetensors models are accepted "
            "(convert .bin checkpoints with `save_pretrained(safe_serialization=True)`)"
        )
    return shards


def load_state_dict(shards: list[Path]) -> dict:
    """All tensors of the shards, by name; a name in two shards is an error."""
    from safetensors.torch import load_file

    state_dict: dict = {}
    for shard in shards:
        tensors = load_file(str(shard), device="cpu")
        duplicated = state_dict.keys() & tensors.keys()
        if duplicated:
            raise TensorizeError(
                f"tensors {sorted(duplicated)[:5]} appear in more than one shard ({shard.name})"
            )
        state_dict.update(tensors)
    return state_dict


def describe_tensors(state_dict: dict) -> TensorSpecs:
    """Name → (shape, dtype string) for each tensor."""
    return {name: (tuple(tensor.shape), str(tensor.dtype)) for name, tensor in state_dict.items()}


def model_files_to_copy(model_dir: Path) -> list[str]:
    """Relative paths of the config and tokenizer files to ship beside the weights."""
    names = []
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir).as_posix()
        if not path.is_file() or relative.startswith(".") or relative.endswith(EXCLUDED_SUFFIXES):
            continue
        if any(fnmatch.fnmatchcase(relative, pattern) for pattern in MODEL_FILE_PATTERNS):
            names.append(relative)
    return names


def sha256_file(path: Path, chunk_bytes: int = 8 * 1024 * 1024) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_digest(artifact_dir: Path) -> str:
    """SHA-256 over every file of an artifact (paths and contents): its content address in the cache.

    Weights alone are not enough: two models with identical weights but different tokenizers or configs
    must not share a cache entry.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in artifact_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(artifact_dir).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def verify_tensorized(weights_path: Path, expected: TensorSpecs) -> int:
    """Read `weights_path` back with hash verification and check names, shapes and dtypes; return count.

    Raises TensorizeError on a hash mismatch, a missing or extra tensor, or a shape/dtype difference.
    """
    from tensorizer import TensorDeserializer
    from tensorizer.serialization import HashMismatchError

    found: TensorSpecs = {}
    try:
        with TensorDeserializer(str(weights_path), device="cpu", lazy_load=True, verify_hash=True) as tensors:
            for name, tensor in tensors.items():
                found[name] = (tuple(tensor.shape), str(tensor.dtype))
    except HashMismatchError as error:
        raise TensorizeError(f"{weights_path} is corrupt: tensor hash check failed ({error})") from error
    missing = sorted(expected.keys() - found.keys())
    extra = sorted(found.keys() - expected.keys())
    changed = sorted(name for name in expected.keys() & found.keys() if expected[name] != found[name])
    if missing or extra or changed:
        details = "; ".join(
            part
            for part in (
                missing and f"missing {missing[:5]}",
                extra and f"unexpected {extra[:5]}",
                changed and f"shape/dtype differ for {[(n, expected[n], found[n]) for n in changed[:3]]}",
            )
            if part
        )
        raise TensorizeError(f"{weights_path} does not match the source weights: {details}")
    return len(found)


def tensorize_model(model_dir: Path, out_dir: Path, chat_template: str | None = None) -> TensorizedArtifact:
    """Serialize `model_dir`'s safetensors to `out_dir/model.tensors`, copy config/tokenizer files, verify.

    `chat_template`, when given, becomes the artifact's `chat_template.jinja` (for models that ship none).
    """
    from tensorizer import TensorSerializer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise TensorizeError(f"{model_dir} has no config.json: not a Hugging Face model folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / WEIGHTS_FILENAME

    started = time.perf_counter()
    state_dict = load_state_dict(find_safetensors_files(model_dir))
    expected = describe_tensors(state_dict)
    serializer = TensorSerializer(str(weights_path))
    try:
        # write_state_dict, not write_module: the latter also stores non-persistent buffers
        # (rotary inv_freq) that vLLM then refuses to load.
        serializer.write_state_dict(state_dict)
    finally:
        serializer.close()
    del state_dict
    serialize_s = time.perf_counter() - started

    copied = model_files_to_copy(model_dir)
    for relative in copied:
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_dir / relative, target)
    if chat_template is not None:
        write_chat_template(out_dir, chat_template)

    started = time.perf_counter()
    tensor_count = verify_tensorized(weights_path, expected)
    verify_s = time.perf_counter() - started

    return TensorizedArtifact(
        out_dir=out_dir,
        weights_path=weights_path,
        sha256=sha256_file(weights_path),
        weights_bytes=weights_path.stat().st_size,
        copied_files=copied,
        serialize_s=serialize_s,
        verify_s=verify_s,
        tensor_count=tensor_count,
        supplied_chat_template=chat_template is not None,
    )
