"""The six software-defined assets of a submission, in pipeline order."""

from assets.cached_s3_object import cached_s3_object
from assets.feedback_summary import feedback_summary
from assets.latency_report import latency_report
from assets.live_deployment import live_deployment
from assets.partitions import submissions_partitions
from assets.raw_weights import raw_weights
from assets.tensorized_artifact import tensorized_artifact

PIPELINE_ASSETS = [raw_weights, tensorized_artifact, cached_s3_object, live_deployment, latency_report]
ALL_ASSETS = [*PIPELINE_ASSETS, feedback_summary]

__all__ = ["ALL_ASSETS", "PIPELINE_ASSETS", "feedback_summary", "submissions_partitions"]
