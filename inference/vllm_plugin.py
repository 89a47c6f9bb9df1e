"""vLLM general plugin: make `--load-format tensorizer` work on the CPU backend.

vLLM's TensorizerLoader never calls `process_weights_after_loading`, so on CPU the linear layers never
get their `cpu_linear` kernels and the first forward pass fails with
`'QKVParallelLinear' object has no attribute 'cpu_linear'`. This plugin wraps the loader's `load_model`
to run that step afterwards. vLLM loads general plugins in each of its processes (API server, engine
core, worker), so `register()` is idempotent and on GPU platforms it changes nothing.

Declared in pyproject.toml: `[project.entry-points."vllm.general_plugins"]`
`guanaco_tensorizer_cpu = "inference.vllm_plugin:register"`.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

logger = logging.getLogger("vllm.guanaco_tensorizer_cpu")

_PATCH_MARKER = "_guanaco_processes_weights_after_loading"


def register() -> None:
    """Entry point called by vLLM: patch TensorizerLoader.load_model on CPU, once per process."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.model_loader.tensorizer_loader import TensorizerLoader

    if getattr(TensorizerLoader.load_model, _PATCH_MARKER, False):
        return
    if "process_weights_after_loading" in TensorizerLoader.load_model.__code__.co_names:
        return  # a vLLM that already post-processes tensorizer loads needs no help
    TensorizerLoader.load_model = _with_weight_processing(TensorizerLoader.load_model)
    logger.info("guanaco: tensorizer loads on CPU now run process_weights_after_loading")


def _with_weight_processing(load_model: Any) -> Any:
    """Wrap a loader's load_model so the model's weights are post-processed as BaseModelLoader does."""

    @functools.wraps(load_model)
    def load_model_then_process(self: Any, vllm_config: Any, model_config: Any, prefix: str = "") -> Any:
        import torch
        from vllm.model_executor.model_loader.utils import process_weights_after_loading

        model = load_model(self, vllm_config, model_config, prefix)
        load_device = vllm_config.load_config.device or vllm_config.device_config.device
        process_weights_after_loading(model, model_config, torch.device(load_device))
        return model

    setattr(load_model_then_process, _PATCH_MARKER, True)
    return load_model_then_process


def is_registered() -> bool:
    """True when this process's TensorizerLoader carries the patch."""
    from vllm.model_executor.model_loader.tensorizer_loader import TensorizerLoader

    return bool(getattr(TensorizerLoader.load_model, _PATCH_MARKER, False))
