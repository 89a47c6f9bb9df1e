"""Which model architectures vLLM serves for text generation, read from vLLM's registry once.

The list is generated when vLLM is installed (`make install` runs `python -m
guanaco_dagster.stages.vllm_architectures --write`) and committed as `vllm_architectures.json`, so the
intake check works in the platform image, which has no vLLM, and never pays for importing vLLM.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from inference.model_info_cache import DEFAULT_ARCHITECTURES

ARCHITECTURES_FILE = Path(__file__).with_name("vllm_architectures.json")
TEXT_GENERATION = "text generation"

# vLLM's registry keeps one table per kind of model; each name here is a table in
# vllm/model_executor/models/registry.py and the kind a developer is told about.
_REGISTRY_TABLES = {
    "_TEXT_GENERATION_MODELS": TEXT_GENERATION,
    "_EMBEDDING_MODELS": "an embedding (pooling) model",
    "_LATE_INTERACTION_MODELS": "a late-interaction retrieval (pooling) model",
    "_REWARD_MODELS": "a reward (pooling) model",
    "_TOKEN_CLASSIFICATION_MODELS": "a token-classification (pooling) model",
    "_SEQUENCE_CLASSIFICATION_MODELS": "a sequence-classification (pooling) model",
    "_MULTIMODAL_MODELS": "a multimodal model",
    "_SPECULATIVE_DECODING_MODELS": "a speculative-decoding draft model",
    "_TRANSFORMERS_BACKEND_MODELS": "a generic Transformers-backend entry",
}
# The Transformers-backend table mixes kinds; its entries that vLLM runs as causal LMs generate text.
_TRANSFORMERS_TABLE = "_TRANSFORMERS_SUPPORTED_MODELS"
_CAUSAL_LM_BACKENDS = ("TransformersForCausalLM", "TransformersMoEForCausalLM")
# Named first when a developer is told what is served: the families most fine-tunes start from (the same
# ones the inference image's model-info cache is filled for).
WELL_KNOWN = DEFAULT_ARCHITECTURES


@dataclass(frozen=True)
class ServedArchitectures:
    """vLLM's architectures: those it serves for text generation, and the kind of every other one."""

    vllm_version: str
    text_generation: frozenset[str]
    other_kinds: dict[str, str]

    def examples(self, count: int = 6) -> list[str]:
        """A few served architectures to name in a message, the common ones first."""
        known = [name for name in WELL_KNOWN if name in self.text_generation]
        rest = sorted(self.text_generation - set(known))
        return (known + rest)[:count]


@cache
def served_architectures() -> ServedArchitectures:
    """The committed list (read once per process); no vLLM import."""
    data = json.loads(ARCHITECTURES_FILE.read_text())
    return ServedArchitectures(
        vllm_version=data["vllm_version"],
        text_generation=frozenset(data["text_generation"]),
        other_kinds=dict(data["other_kinds"]),
    )


def read_vllm_registry() -> dict[str, object]:
    """The list as vLLM's installed registry has it, JSON-ready. Imports vLLM: install time only."""
    import vllm
    from vllm.model_executor.models import registry

    missing = [name for name in (*_REGISTRY_TABLES, _TRANSFORMERS_TABLE) if not hasattr(registry, name)]
    if missing:
        raise RuntimeError(
            f"vLLM {vllm.__version__}'s registry has no {', '.join(missing)}: its layout changed; update "
            "_REGISTRY_TABLES in guanaco_dagster/stages/vllm_architectures.py"
        )
    text_generation = set(registry._TEXT_GENERATION_MODELS)  # noqa: SLF001 - the registry's own tables
    for name, (_module, backend) in getattr(registry, _TRANSFORMERS_TABLE).items():
        if backend in _CAUSAL_LM_BACKENDS:
            text_generation.add(name)
    other_kinds: dict[str, str] = {}
    for table, kind in _REGISTRY_TABLES.items():
        for name in getattr(registry, table):
            if name not in text_generation:
                other_kinds.setdefault(name, kind)
    for name in getattr(registry, _TRANSFORMERS_TABLE):
        if name not in text_generation:
            other_kinds.setdefault(name, "a multimodal model")
    served = set(registry.ModelRegistry.get_supported_archs())
    return {
        "vllm_version": vllm.__version__,
        "text_generation": sorted(text_generation & served),
        "other_kinds": dict(sorted(other_kinds.items())),
    }


def main(argv: list[str] | None = None) -> int:
    """`--write` regenerates the committed list from the installed vLLM; without it, print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {ARCHITECTURES_FILE.name}")
    args = parser.parse_args(argv)
    data = read_vllm_registry()
    if args.write:
        ARCHITECTURES_FILE.write_text(json.dumps(data, indent=1) + "\n")
    print(
        f"vLLM {data['vllm_version']}: {len(data['text_generation'])} text-generation architectures, "
        f"{len(data['other_kinds'])} others" + (f" → {ARCHITECTURES_FILE.name}" if args.write else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
