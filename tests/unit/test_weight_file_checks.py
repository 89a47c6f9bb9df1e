"""Weight files that lie or hold broken values are refused, naming the file and the tensor; the list of
architectures vLLM serves is read from the committed file, without importing vLLM."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guanaco_dagster.stages.finite_scan import non_finite_tensors
from guanaco_dagster.stages.vllm_architectures import read_vllm_registry, served_architectures
from guanaco_dagster.stages.weight_checks import WeightCheckError, read_safetensors_header

ROOT = Path(__file__).resolve().parents[2]


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]], **overrides) -> Path:
    """A safetensors file from raw bytes; `overrides` replaces header entries (to make it lie)."""
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    for name, changes in overrides.items():
        header[name] = {**header[name], **changes}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(t[2] for t in tensors.values()))
    return path


def f32(*values: float) -> bytes:
    return np.array(values, dtype=np.float32).tobytes()


def bf16(*values: float) -> bytes:
    return (np.array(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def test_an_honest_header_is_read(tmp_path):
    path = write_safetensors(
        tmp_path / "m.safetensors", {"a": ("F32", [2], f32(1, 2)), "b": ("I8", [3], b"123")}
    )
    assert set(read_safetensors_header(path)) == {"a", "b"}


def test_a_shape_that_disagrees_with_the_byte_span_is_corrupt_naming_the_tensor(tmp_path):
    path = write_safetensors(
        tmp_path / "model.safetensors",
        {"norm.weight": ("F32", [4], f32(1, 2, 3, 4)), "lm_head.weight": ("F32", [2], f32(5, 6))},
        **{"norm.weight": {"shape": [8]}},
    )
    with pytest.raises(
        WeightCheckError, match=r"model.safetensors is corrupt: tensor 'norm.weight' is declared "
    ):
        read_safetensors_header(path)


def test_overlapping_tensors_are_corrupt(tmp_path):
    path = write_safetensors(
        tmp_path / "model.safetensors",
        {"a": ("F32", [2], f32(1, 2)), "b": ("F32", [2], f32(3, 4))},
        b={"data_offsets": [4, 12]},
    )
    with pytest.raises(WeightCheckError, match="tensor 'b' overlaps the tensor before it"):
        read_safetensors_header(path)


def test_an_unknown_dtype_is_corrupt(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", {"a": ("F32", [2], f32(1, 2))}, a={"dtype": "Q7"})
    with pytest.raises(WeightCheckError, match="tensor 'a' has unknown dtype 'Q7'"):
        read_safetensors_header(path)


def test_trailing_bytes_after_the_last_tensor_are_refused(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", {"a": ("F32", [2], f32(1, 2))})
    path.write_bytes(path.read_bytes() + b"extra")
    with pytest.raises(WeightCheckError, match="truncated or corrupt"):
        read_safetensors_header(path)


@pytest.mark.parametrize(
    ("dtype", "data"),
    [
        ("F32", f32(1, float("nan"), 3)),
        ("F32", f32(1, float("-inf"), 3)),
        ("BF16", bf16(1, float("nan"), 3)),
        ("F16", np.array([1, np.inf, 3], dtype=np.float16).tobytes()),
        ("F64", np.array([1, np.nan, 3], dtype=np.float64).tobytes()),
    ],
    ids=["f32-nan", "f32-inf", "bf16-nan", "f16-inf", "f64-nan"],
)
def test_non_finite_values_are_found_in_every_float_dtype(tmp_path, dtype, data):
    path = write_safetensors(
        tmp_path / "m.safetensors", {"ok": ("F32", [1], f32(1)), "bad": (dtype, [3], data)}
    )
    assert non_finite_tensors(path, read_safetensors_header(path)) == ["bad"]


def test_finite_weights_and_integers_pass_the_scan(tmp_path):
    huge_but_finite = np.array([3.0e38, -3.0e38, 0.0], dtype=np.float32).tobytes()
    path = write_safetensors(
        tmp_path / "m.safetensors",
        {
            "w": ("F32", [3], huge_but_finite),
            "ids": ("U8", [4], b"\xff\xff\xff\xff"),
            "b": ("BF16", [2], bf16(1, 2)),
        },
    )
    assert non_finite_tensors(path, read_safetensors_header(path)) == []


def test_a_nan_far_into_a_tensor_is_found_with_a_buffer_much_smaller_than_the_tensor(tmp_path):
    values = np.ones(100_000, dtype=np.float32)
    values[-1] = np.nan
    path = write_safetensors(tmp_path / "m.safetensors", {"big": ("F32", [100_000], values.tobytes())})
    assert non_finite_tensors(path, read_safetensors_header(path), chunk_bytes=4096) == ["big"]


def test_the_committed_architecture_list_is_what_the_installed_vllm_serves():
    # Fails when vLLM was upgraded without `python -m guanaco_dagster.stages.vllm_architectures --write`.
    committed = served_architectures()
    registry = read_vllm_registry()
    assert committed.vllm_version == registry["vllm_version"]
    assert sorted(committed.text_generation) == registry["text_generation"]
    assert "LlamaForCausalLM" in committed.text_generation
    assert committed.other_kinds["BertModel"] == "an embedding (pooling) model"


BLOCKED_VLLM = """
import sys, json
from pathlib import Path

class NoVllm:
    def find_spec(self, name, path=None, target=None):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("vLLM is not installed in this image")

sys.meta_path.insert(0, NoVllm())
from guanaco_dagster.stages.weight_checks import WeightCheckError, _check_architecture

accepted = _check_architecture({"architectures": ["LlamaForCausalLM"]})
try:
    _check_architecture({"architectures": ["BertModel"]})
    refused = None
except WeightCheckError as error:
    refused = str(error)
print(json.dumps({"accepted": accepted, "refused": refused, "vllm_loaded": "vllm" in sys.modules}))
"""


def test_the_architecture_check_works_where_vllm_cannot_be_imported():
    completed = subprocess.run(
        [sys.executable, "-c", BLOCKED_VLLM], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["accepted"] == "LlamaForCausalLM"
    assert outcome["vllm_loaded"] is False
    assert outcome["refused"].startswith(
        "architecture 'BertModel' is an embedding (pooling) model in vLLM, not a text-generation one"
    )
    assert "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM" in outcome["refused"]
