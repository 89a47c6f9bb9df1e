"""The Hugging Face Hub as a Dagster resource."""

from pathlib import Path

from dagster import ConfigurableResource

from guanaco_dagster.stages.hub_download import DownloadResult, HubConfig, download_model


class HubResource(ConfigurableResource, HubConfig):
    """Downloads submitted models; transient failures are retried by Dagster (see assets/stage.py)."""

    def download(self, repo_id: str, revision: str, dest: Path, max_weight_bytes: int) -> DownloadResult:
        """One attempt at downloading `repo_id@revision` into `dest`."""
        return download_model(
            repo_id,
            revision,
            dest,
            endpoint=self.hf_endpoint,
            token=self.hf_token,
            attempts=1,
            max_weight_bytes=max_weight_bytes,
            timeout_s=self.hub_timeout_s,
        )
