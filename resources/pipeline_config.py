"""Limits, stress-test shape and SLO of the pipeline, as a Dagster resource."""

from pathlib import Path

from dagster import ConfigurableResource

from guanaco_dagster.pipeline.stress import Slo, StressConfig


class PipelineConfigResource(ConfigurableResource):
    """Settings the assets read; built from `Settings` in one place (definitions)."""

    work_dir: str
    max_parameters: int
    max_weight_bytes: int
    stress_concurrency: int = 8
    stress_requests: int = 32
    stress_max_tokens: int = 32
    stress_timeout_s: float = 60.0
    slo_latency_p95_s: float = 10.0
    slo_ttft_p95_s: float = 5.0
    slo_max_error_rate: float = 0.0

    def submission_dir(self, submission_id: str) -> Path:
        """Staging folder of one submission (downloads and the tensorized artifact)."""
        return Path(self.work_dir) / submission_id

    @property
    def stress(self) -> StressConfig:
        return StressConfig(
            self.stress_concurrency, self.stress_requests, self.stress_max_tokens, self.stress_timeout_s
        )

    @property
    def slo(self) -> Slo:
        return Slo(self.slo_latency_p95_s, self.slo_ttft_p95_s, self.slo_max_error_rate)
