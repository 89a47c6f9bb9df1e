"""Fill vLLM's model-info cache ahead of time, so a server's first start skips the model inspection.

Before serving, vLLM inspects the model's class in a subprocess that imports torch and the model code again
(8.7 s of a 36 s start on 2 cores), unless `$VLLM_CACHE_ROOT/modelinfos` holds the result for the same vLLM
source. The local deployer keeps that folder under the platform home, so only the first start per home
pays; an image bakes it in at build time:

    VLLM_CACHE_ROOT=/opt/vllm-cache python -m inference.model_info_cache LlamaForCausalLM Qwen2ForCausalLM
    ENV VLLM_CACHE_ROOT=/opt/vllm-cache
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# The families most fine-tunes start from (guanaco_dagster/stages/vllm_architectures.py names them first).
DEFAULT_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Gemma2ForCausalLM",
    "Phi3ForCausalLM",
    "GPT2LMHeadModel",
)


def warm_model_info_cache(architectures: Sequence[str]) -> list[str]:
    """Inspect each architecture once (its result lands in vLLM's cache); return those vLLM lacks."""
    from vllm.model_executor.models.registry import ModelRegistry

    # The registry's own inspection: the same call, cache file and key vLLM uses when it serves.
    return [arch for arch in architectures if ModelRegistry._try_inspect_model_cls(arch) is None]  # noqa: SLF001


def main(argv: Sequence[str] | None = None) -> int:
    """Warm the cache for the named architectures (default: the common families); 1 if any is unknown."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.model_info_cache", description=__doc__.splitlines()[0]
    )
    parser.add_argument("architectures", nargs="*", default=list(DEFAULT_ARCHITECTURES))
    args = parser.parse_args(argv)
    missing = warm_model_info_cache(args.architectures)
    if missing:
        print(f"vLLM does not serve {', '.join(missing)}: nothing cached for them", file=sys.stderr)
        return 1
    print(f"cached model info for {len(args.architectures)} architectures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
