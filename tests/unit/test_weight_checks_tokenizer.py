"""The intake checks read the tokenizer with the `tokenizers` library: neither transformers, torch nor vLLM
is imported by the `raw_weights` checks, and the vocabulary they report is the one transformers counts."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guanaco_dagster.stages.weight_checks import WeightCheckError, check_model_dir

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"max_parameters": 10**9, "max_weight_bytes": 10**10}
VOCAB = ["<s>", "</s>", "<unk>", "hello", "how", "are", "you", ",", "?"]


def _tiny_model_folder(folder: Path, *, declared_extra_tokens: int = 0) -> Path:
    """A complete small Llama folder without torch: config, one safetensors file, a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True)
    vocab = {token: index for index, token in enumerate(VOCAB)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config: dict[str, object] = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>"}
    if declared_extra_tokens:
        tokenizer_config["added_tokens_decoder"] = {
            str(len(VOCAB) + i): {"content": f"<extra_{i}>", "special": True}
            for i in range(declared_extra_tokens)
        }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "vocab_size": 16, "max_position_embeddings": 256})
    )
    data = np.zeros((16, 4), dtype=np.float32).tobytes()
    header = json.dumps({"embed.weight": {"dtype": "F32", "shape": [16, 4], "data_offsets": [0, len(data)]}})
    encoded = header.encode() + b" " * (-len(header) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return folder


CHECK_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from guanaco_dagster.stages.weight_checks import check_model_dir
report = check_model_dir(Path(sys.argv[1]), max_parameters=10**9, max_weight_bytes=10**10)
heavy = sorted(name for name in ("transformers", "torch", "vllm") if name in sys.modules)
print(json.dumps({"vocab": report.tokenizer_vocab_size, "class": report.tokenizer_class, "heavy": heavy}))
"""


def test_the_checks_import_neither_transformers_nor_torch_nor_vllm(tmp_path: Path) -> None:
    folder = _tiny_model_folder(tmp_path / "model")

    completed = subprocess.run(
        [sys.executable, "-c", CHECK_IN_A_FRESH_PROCESS, str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome == {"vocab": len(VOCAB), "class": "PreTrainedTokenizerFast", "heavy": []}


def test_the_vocabulary_counts_what_transformers_counts_including_declared_tokens(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = _tiny_model_folder(tmp_path / "model", declared_extra_tokens=3)

    report = check_model_dir(folder, **LIMITS)

    assert report.tokenizer_vocab_size == len(AutoTokenizer.from_pretrained(folder)) == len(VOCAB) + 3


def test_a_tokenizer_json_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    folder = _tiny_model_folder(tmp_path / "model")
    (folder / "tokenizer.json").write_text("{not json")

    with pytest.raises(WeightCheckError, match=r"^the tokenizer does not load \("):
        check_model_dir(folder, **LIMITS)


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tmp_path: Path) -> None:
    folder = _tiny_model_folder(tmp_path / "model", declared_extra_tokens=10)

    with pytest.raises(
        WeightCheckError, match="the tokenizer has 19 tokens but the model's vocab_size is 16"
    ):
        check_model_dir(folder, **LIMITS)
