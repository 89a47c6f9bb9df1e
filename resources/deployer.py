"""The inference-server deployer as a Dagster resource: local child processes or Kubernetes."""

from typing import Literal

from dagster import Config, ConfigurableResource

from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.deployment.kubernetes_config import KubernetesConfig
from guanaco_dagster.deployment.local_config import LocalServerConfig
from guanaco_dagster.stages.s3_client import S3Config
from guanaco_dagster.stages.stress import StressConfig

# How long a prestarted server waits for its artifact: intake of the largest allowed model, with margin.
PRESTART_TIMEOUT_S = 1800.0


class KubernetesDeployerConfig(Config, KubernetesConfig):
    """`GUANACO_K8S_*`, validated as the deployer reads it."""


class DeployerResource(ConfigurableResource, LocalServerConfig, S3Config, StressConfig):
    """Chooses and configures the `Deployer` implementation; servers reach the S3 cache with its keys and
    keep KV cache for the stress test's concurrency."""

    kind: Literal["local", "kubernetes"] = "local"
    state_dir: str
    # Read from GUANACO_K8S_* when the definitions load (so the Dagster UI shows it), else when deploying.
    kubernetes: KubernetesDeployerConfig | None = None

    def get_deployer(self) -> Deployer:
        """The configured deployer: local child processes, or Deployments on Kubernetes."""
        if self.kind == "kubernetes":
            return self._kubernetes_deployer()
        from guanaco_dagster.deployment.local_process import LocalProcessDeployer

        return LocalProcessDeployer(
            state_dir=self.state_dir,
            s3_endpoint_url=self.s3_endpoint,
            s3_access_key=self.s3_access_key_id,
            s3_secret_key=self.s3_secret_access_key,
            s3_region=self.s3_region,
            dtype=self.vllm_dtype,
            kv_cache_gib=self.vllm_kv_cache_gib,
            kv_cache_sequences=self.stress_concurrency,
            max_model_len=self.vllm_max_model_len,
            startup_timeout_s=self.server_startup_timeout_s,
            prestart_timeout_s=max(self.server_startup_timeout_s, PRESTART_TIMEOUT_S),
            keep_spare=self.server_spare,
            platform_pid=self.platform_pid,
            # Model servers only read the cache: read-only keys where the operator configured them.
            s3_read_access_key=self.s3_read_access_key_id,
            s3_read_secret_key=self.s3_read_secret_access_key,
        )

    def prestart(self, submission_id: str) -> bool:
        """Start the submission's server ahead of its artifact (local servers, when `server_prestart`);
        False when nothing was started. Kubernetes pods start when deployed."""
        if self.kind != "local" or not self.server_prestart:
            return False
        return self.get_deployer().prestart(submission_id)

    def deployment_timeout_s(self) -> float:
        """The longest a deployment of the configured deployer may take before it fails on its own."""
        if self.kind == "kubernetes":
            settings = self._kubernetes_settings()
            return settings.startup_deadline_s + settings.deletion_timeout_s
        return self.server_startup_timeout_s

    def platform_max_model_len(self) -> int:
        """The longest context the platform serves: the configured deployer's --max-model-len."""
        if self.kind == "kubernetes":
            return self._kubernetes_settings().max_model_len
        return self.vllm_max_model_len

    def _kubernetes_settings(self) -> KubernetesConfig:
        from guanaco_dagster.deployment.kubernetes_config import KubernetesSettings

        return self.kubernetes or KubernetesSettings()

    def _kubernetes_deployer(self) -> Deployer:
        # Imported here: the local default should not pay for the kubernetes client's import.
        from guanaco_dagster.deployment.kubernetes import KubernetesDeployer

        settings = self._kubernetes_settings()
        # The S3 endpoint and region the pipeline uploads to are the model servers' too, unless the
        # GUANACO_K8S_* settings say otherwise (e.g. a cluster-internal endpoint for the GPU nodes).
        defaults = {"s3_endpoint": self.s3_endpoint, "s3_region": self.s3_region}
        updates = {key: value for key, value in defaults.items() if getattr(settings, key) is None and value}
        return KubernetesDeployer(settings.model_copy(update=updates))
