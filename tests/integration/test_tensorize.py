"""Tensorizing a model folder: the artifact holds the same tensors, the files vLLM needs, and is checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorizer import TensorDeserializer

from guanaco_dagster.stages.tensorize import (
    TensorizeError,
    describe_tensors,
    tensorize_model,
    verify_tensorized,
)
from inference.artifact import WEIGHTS_FILENAME
from tests.fixtures.vllm import TensorizedTinyModel


def test_round_trip_gives_the_same_tensors_as_the_safetensors_source(
    tensorized_tiny_model: TensorizedTinyModel,
) -> None:
    source = load_file(str(tensorized_tiny_model.model_dir / "model.safetensors"))

    with TensorDeserializer(str(tensorized_tiny_model.artifact.weights_path), device="cpu") as loaded:
        restored = {name: tensor.clone() for name, tensor in loaded.items()}

    assert describe_tensors(restored) == describe_tensors(source)
    assert all(torch.equal(restored[name], source[name]) for name in source)
    assert tensorized_tiny_model.artifact.tensor_count == len(source)


def test_artifact_folder_holds_weights_config_and_tokenizer(
    tensorized_tiny_model: TensorizedTinyModel,
) -> None:
    artifact = tensorized_tiny_model.artifact

    names = sorted(p.name for p in artifact.out_dir.iterdir())

    supplied = ["chat_template.jinja"] if artifact.supplied_chat_template else []
    assert names == sorted([WEIGHTS_FILENAME, *artifact.copied_files, *supplied])
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    assert artifact.weights_bytes == artifact.weights_path.stat().st_size
    assert len(artifact.sha256) == 64
    assert artifact.serialize_s > 0 and artifact.verify_s > 0


def test_code_readme_and_source_weights_are_not_copied(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "modeling_custom.py").write_text("raise SystemExit('never shipped')\n")
    (model_dir / "pytorch_model.bin").write_bytes(b"old checkpoint")

    artifact = tensorize_model(model_dir, tmp_path / "artifact")

    shipped = {p.name for p in artifact.out_dir.iterdir()}
    assert not shipped & {"modeling_custom.py", "pytorch_model.bin", "model.safetensors", "README.md"}


def test_same_weights_give_the_same_sha256(
    tensorized_tiny_model: TensorizedTinyModel, tmp_path: Path
) -> None:
    again = tensorize_model(tensorized_tiny_model.model_dir, tmp_path / "again")

    assert again.sha256 == tensorized_tiny_model.artifact.sha256


def test_a_flipped_byte_in_the_weights_is_detected(
    tensorized_tiny_model: TensorizedTinyModel, tmp_path: Path
) -> None:
    weights = tmp_path / WEIGHTS_FILENAME
    shutil.copy(tensorized_tiny_model.artifact.weights_path, weights)
    source = load_file(str(tensorized_tiny_model.model_dir / "model.safetensors"))
    data = bytearray(weights.read_bytes())
    # Flip a byte inside the embedding matrix's stored data, found by its first bytes.
    offset = data.find(source["model.embed_tokens.weight"].numpy().tobytes()[:64])
    assert offset > 0
    data[offset + 100] ^= 0xFF
    weights.write_bytes(bytes(data))

    with pytest.raises(TensorizeError, match="hash check failed"):
        verify_tensorized(weights, describe_tensors(source))


def test_a_tensor_missing_from_the_artifact_is_reported(tensorized_tiny_model: TensorizedTinyModel) -> None:
    source = load_file(str(tensorized_tiny_model.model_dir / "model.safetensors"))
    expected = {**describe_tensors(source), "model.extra.weight": ((4, 4), "torch.float32")}

    with pytest.raises(TensorizeError, match=r"missing \['model.extra.weight'\]"):
        verify_tensorized(tensorized_tiny_model.artifact.weights_path, expected)


def test_a_folder_without_safetensors_is_refused_with_a_clear_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "bin-only"
    model_dir.mkdir()
    shutil.copy(tiny_model_dir / "config.json", model_dir)

    with pytest.raises(TensorizeError, match="no safetensors weights"):
        tensorize_model(model_dir, tmp_path / "artifact")
