"""The Hugging Face Hub as a Dagster resource."""

from pathlib import Path

from dagster import ConfigurableResource

from guanaco_dagster.pipeline.hub_download import DownloadResult, download_model


class HubResource(ConfigurableResource):
    """Downloads submitted models; `endpoint=None` keeps huggingface_hub's own default (HF_ENDPOINT)."""

    endpoint: str | None = None
    token: str | None = None
    attempts: int = 4
    timeout_s: float = 30.0

    def download(self, repo_id: str, revision: str, dest: Path, max_weight_bytes: int) -> DownloadResult:
        return download_model(
            repo_id,
            revision,
            dest,
            endpoint=self.endpoint,
            token=self.token,
            attempts=self.attempts,
            max_weight_bytes=max_weight_bytes,
            timeout_s=self.timeout_s,
        )
