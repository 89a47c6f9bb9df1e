"""Build tiny Llama models offline: a byte-level BPE trained on bundled text plus random weights.

The demo serves one of these from the loopback Hub server and the tests build their own; nothing is
downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CORPUS_PATH = Path(__file__).parent / "sample_corpus.txt"


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny Llama; the defaults give ~1M parameters that vLLM serves in a blink."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    # head_dim = 64 / 2 = 32: vLLM's CPU attention supports head sizes 32..512 only.
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    vocab_size: int = 512
    max_position_embeddings: int = 2048
    seed: int = 0
    dtype: str = "float32"
    # A few hundred steps on the bundled corpus turn random babble into short English-like replies.
    train_steps: int = 0


def train_tokenizer(out_dir: Path, vocab_size: int) -> None:
    """Train a byte-level BPE on the bundled corpus and save it in the transformers layout."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS_PATH.read_text(encoding="utf-8").splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(out_dir)


def build_tiny_llama(out_dir: Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write a complete, servable tiny Llama repository (config, safetensors, tokenizer) to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    train_tokenizer(out_dir, spec.vocab_size)
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        vocab_size=spec.vocab_size,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
        dtype=spec.dtype,
    )
    model = LlamaForCausalLM(config)
    if spec.train_steps:
        train_on_corpus(model, out_dir, spec.train_steps, spec.seed)
    model = model.to(getattr(torch, spec.dtype))
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "README.md").write_text(
        f"# Tiny Llama\n\nRandom weights, {sum(p.numel() for p in model.parameters()):,} parameters.\n"
    )
    return out_dir


def train_on_corpus(model: object, tokenizer_dir: Path, steps: int, seed: int, window: int = 48) -> float:
    """Fit the model to the bundled corpus for `steps` next-token steps; return the last loss."""
    import torch
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    ids = torch.tensor(tokenizer(CORPUS_PATH.read_text(encoding="utf-8"))["input_ids"])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - window - 1, (32,), generator=generator)
        batch = torch.stack([ids[s : s + window] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return float(loss.detach())


def describe(model_dir: Path) -> dict[str, object]:
    """Key facts of a built model, for logs and tests."""
    config = json.loads((model_dir / "config.json").read_text())
    return {"architectures": config["architectures"], "files": sorted(p.name for p in model_dir.iterdir())}
