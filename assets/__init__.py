"""The six software-defined assets of a submission, in pipeline order, and the area's definitions."""

from dagster import AssetKey, AssetsDefinition, Definitions

from assets.cached_s3_object import cached_s3_object
from assets.feedback_summary import feedback_summary
from assets.latency_report import latency_report
from assets.live_deployment import live_deployment
from assets.partitions import submissions_partitions
from assets.raw_weights import raw_weights
from assets.tensorized_artifact import tensorized_artifact
from guanaco_dagster.submissions.lifecycle import Status

PIPELINE_ASSETS = [raw_weights, tensorized_artifact, cached_s3_object, live_deployment, latency_report]
ALL_ASSETS = [*PIPELINE_ASSETS, feedback_summary]

# The asset that carries out each pipeline stage (the status a submission holds while it runs).
STAGE_ASSETS: dict[Status, AssetsDefinition] = {
    Status.DOWNLOADING: raw_weights,
    Status.TENSORIZING: tensorized_artifact,
    Status.UPLOADING: cached_s3_object,
    Status.DEPLOYING: live_deployment,
    Status.STRESS_TESTING: latency_report,
}


def assets_from_stage(stage: Status) -> list[AssetKey]:
    """The stage's asset and every pipeline asset downstream of it (what a resumed run materializes)."""
    selected = {STAGE_ASSETS[stage].key}
    for asset in PIPELINE_ASSETS:  # listed upstream first, so one pass reaches everything downstream
        if selected & set(asset.dependency_keys):
            selected.add(asset.key)
    return [asset.key for asset in PIPELINE_ASSETS if asset.key in selected]


defs = Definitions(assets=ALL_ASSETS)

__all__ = [
    "ALL_ASSETS",
    "PIPELINE_ASSETS",
    "STAGE_ASSETS",
    "assets_from_stage",
    "defs",
    "feedback_summary",
    "submissions_partitions",
]
