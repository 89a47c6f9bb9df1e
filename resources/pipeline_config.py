"""Limits, staging, stress-test shape and SLO of the pipeline, as a Dagster resource."""

from dagster import ConfigurableResource

from guanaco_dagster.stages.staging import StagingLayout
from guanaco_dagster.stages.stress import Slo, StressConfig
from guanaco_dagster.stages.weight_checks import IntakeLimits


class PipelineConfigResource(ConfigurableResource, IntakeLimits, StressConfig, Slo):
    """What the assets read; it *is* the stress config and the SLO, so the stage functions take it as is."""

    work_dir: str

    @property
    def staging(self) -> StagingLayout:
        """Where submissions are staged between stages."""
        return StagingLayout(self.work_dir)
