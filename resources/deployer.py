"""The inference-server deployer as a Dagster resource: local child processes or Kubernetes."""

from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource

from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.deployment.local_process import LocalProcessDeployer


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

    def get_deployer(self) -> Deployer:
        if self.kind == "kubernetes":
            raise NotImplementedError(
                "the Kubernetes deployer is not available yet: set GUANACO_DEPLOYER=local"
            )
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
