"""How local vLLM servers are started (`GUANACO_VLLM_*`, `GUANACO_SERVER_*`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LocalServerConfig(BaseModel):
    """vLLM options of the local deployer; Kubernetes has its own (`KubernetesConfig`)."""

    vllm_dtype: str = Field(
        default="float32", description="vLLM --dtype (float32 on CPUs without AVX512-BF16)."
    )
    vllm_kv_cache_gib: int = Field(default=1, ge=0, description="KV cache of each local server, GiB.")
    vllm_max_model_len: int = Field(default=2048, gt=0, description="vLLM --max-model-len (context length).")
    server_startup_timeout_s: float = Field(
        default=300.0, gt=0, description="How long a new server may take to answer its health check, seconds."
    )
    platform_pid: int | None = Field(
        default=None, description="Local servers exit when this process is gone (set by `guanaco up`)."
    )
