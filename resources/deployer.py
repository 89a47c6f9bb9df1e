"""The inference-server deployer as a Dagster resource: local child processes or Kubernetes."""

from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource, EnvVar

from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.deployment.local_process import LocalProcessDeployer
from guanaco_dagster.settings import Settings


class DeployerResource(ConfigurableResource):
    """Chooses and configures the `Deployer` implementation."""

    kind: Literal["local", "kubernetes"] = "local"
    state_dir: str
    s3_endpoint_url: str | None = None
    s3_access_key_id: str
    s3_secret_access_key: str
    s3_region: str = "us-east-1"
    dtype: str = "float32"
    kv_cache_gib: int = 1
    max_model_len: int = 2048
    startup_timeout_s: float = 300.0
    platform_pid: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, s3_secret: "str | EnvVar | None" = None) -> "DeployerResource":
        """The resource for `settings`; `s3_secret` overrides the secret (e.g. an EnvVar for Dagit)."""
        return cls(
            kind=settings.deployer,
            state_dir=str(settings.servers_dir),
            s3_endpoint_url=settings.s3_endpoint,
            s3_access_key_id=settings.s3_access_key_id,
            s3_secret_access_key=s3_secret or settings.s3_secret_access_key.get_secret_value(),
            s3_region=settings.s3_region,
            dtype=settings.vllm_dtype,
            kv_cache_gib=settings.vllm_kv_cache_gib,
            max_model_len=settings.vllm_max_model_len,
            startup_timeout_s=settings.server_startup_timeout_s,
            platform_pid=settings.platform_pid,
        )

    def get_deployer(self) -> Deployer:
        """The configured deployer: local child processes, or Deployments on Kubernetes."""
        if self.kind == "kubernetes":
            return self._kubernetes_deployer()
        return LocalProcessDeployer(
            state_dir=Path(self.state_dir),
            s3_endpoint_url=self.s3_endpoint_url,
            s3_access_key=self.s3_access_key_id,
            s3_secret_key=self.s3_secret_access_key,
            s3_region=self.s3_region,
            dtype=self.dtype,
            kv_cache_gib=self.kv_cache_gib,
            max_model_len=self.max_model_len,
            startup_timeout_s=self.startup_timeout_s,
            platform_pid=self.platform_pid,
        )

    def _kubernetes_deployer(self) -> Deployer:
        # Imported here: the local default should not pay for the kubernetes client's import.
        from guanaco_dagster.deployment.kubernetes import KubernetesDeployer
        from guanaco_dagster.deployment.kubernetes_config import KubernetesSettings

        settings = KubernetesSettings()
        # The S3 endpoint and region the pipeline uploads to are the model servers' too, unless the
        # GUANACO_K8S_* settings say otherwise (e.g. a cluster-internal endpoint for the GPU nodes).
        defaults = {"s3_endpoint": self.s3_endpoint_url, "s3_region": self.s3_region}
        updates = {key: value for key, value in defaults.items() if getattr(settings, key) is None and value}
        return KubernetesDeployer(settings.model_copy(update=updates))
