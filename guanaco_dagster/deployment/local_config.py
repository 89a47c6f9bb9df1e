"""How local vLLM servers are started (`GUANACO_VLLM_*`, `GUANACO_SERVER_*`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LocalServerConfig(BaseModel):
    """vLLM options of the local deployer; Kubernetes has its own (`KubernetesConfig`)."""

    vllm_dtype: str = Field(
        default="float32", description="vLLM --dtype (float32 on CPUs without AVX512-BF16)."
    )
    vllm_kv_cache_gib: int | None = Field(
        default=None,
        ge=1,
        description="KV cache of each local server, GiB; unset: sized from the model's config for "
        "`stress_concurrency` sequences of its served context length (a few MiB for the sample model).",
    )
    vllm_max_model_len: int = Field(default=2048, gt=0, description="vLLM --max-model-len (context length).")
    server_startup_timeout_s: float = Field(
        default=300.0, gt=0, description="How long a new server may take to answer its health check, seconds."
    )
    server_prestart: bool = Field(
        default=True,
        description="Start each local server when its download starts, so vLLM's imports overlap the "
        "download, checks, tensorizing and upload; it is stopped if any of them fails.",
    )
    server_spare: bool = Field(
        default=True,
        description="Keep one local server imported and waiting for a model (about 1.3 GiB, started with "
        "the platform and after each deployment): the next submission adopts it, so vLLM's imports are off "
        "its critical path altogether.",
    )
    platform_pid: int | None = Field(
        default=None, description="Local servers exit when this process is gone (set by `guanaco up`)."
    )
