"""Platform configuration: environment variables with a `GUANACO_` prefix (pydantic-settings)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can configure; defaults run the embedded platform on one machine."""

    model_config = SettingsConfigDict(env_prefix="GUANACO_", extra="ignore")

    home: Path = Field(
        default=Path.home() / ".guanaco" / "platform", description="Working folder of the platform."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the Guanaco store; SQLite under `home` when unset."
    )

    # S3 cache. With no endpoint the platform starts an embedded SeaweedFS server.
    s3_endpoint: str | None = None
    s3_bucket: str = "guanaco-models"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = "guanaco"
    s3_secret_access_key: SecretStr = SecretStr("guanaco-local-secret")

    # Hugging Face Hub. `None` keeps huggingface_hub's own resolution (HF_ENDPOINT, then huggingface.co).
    hf_endpoint: str | None = None
    hf_token: SecretStr | None = None
    hub_retries: int = 4
    hub_timeout_s: float = 30.0

    # Sanity limits on submitted weights.
    max_parameters: int = 15_000_000_000
    max_weight_bytes: int = 40 * 1024**3

    # Inference servers and how Dagster runs steps (see docs/kubernetes.md).
    deployer: Literal["local", "kubernetes"] = "local"
    executor: Literal["in_process", "k8s"] = "in_process"
    vllm_kv_cache_gib: int = 1
    vllm_dtype: str = "float32"
    vllm_max_model_len: int = 2048
    server_startup_timeout_s: float = 300.0
    # A local inference server exits when this process id is gone, so no server outlives the platform.
    platform_pid: int | None = None

    # Stress test and its SLO.
    stress_concurrency: int = 8
    stress_requests: int = 32
    stress_max_tokens: int = 32
    stress_timeout_s: float = 60.0
    slo_latency_p95_s: float = 10.0
    slo_ttft_p95_s: float = 5.0
    slo_max_error_rate: float = 0.0

    # Beta routing: how much feedback a model should collect before it stops being favoured.
    feedback_target: int = 100

    # The HTTP service (`guanaco serve`).
    service_host: str = "127.0.0.1"
    service_port: int = 8080
    # The app's bot-response service authenticates beta routes with this token; unset = beta routes off.
    beta_service_token: SecretStr | None = None
    max_request_bytes: int = 1024 * 1024

    @cached_property
    def resolved_database_url(self) -> str:
        """The store URL, defaulting to a SQLite file under `home`."""
        return self.database_url or f"sqlite:///{self.home / 'guanaco.db'}"

    @property
    def work_dir(self) -> Path:
        """Where downloads and artifacts are staged before they reach the S3 cache."""
        return self.home / "work"

    @property
    def servers_dir(self) -> Path:
        """Where local deployers record the inference servers they started."""
        return self.home / "servers"


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as `GUANACO_*` environment variables, so child processes see the same configuration."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"GUANACO_{name.upper()}"] = str(value)
    return env


def load_settings() -> Settings:
    """Read the settings from the environment now (not cached: tests and launchers change it)."""
    return Settings()
