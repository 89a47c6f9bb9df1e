"""`cached_s3_object`: the artifact in the S3 cache under a content-addressed prefix."""

import shutil

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.partitions import submissions_partitions
from assets.stage import megabytes_per_s, submission_stage
from assets.tensorized_artifact import tensorized_artifact
from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.domain.submissions import get_submission
from guanaco_dagster.pipeline.s3_cache import upload_artifact
from resources import PipelineConfigResource, S3CacheResource, StoreResource


@asset(
    partitions_def=submissions_partitions,
    deps=[tensorized_artifact],
    group_name="submission_pipeline",
    kinds={"s3"},
)
def cached_s3_object(
    context: AssetExecutionContext,
    store: StoreResource,
    s3_cache: S3CacheResource,
    pipeline: PipelineConfigResource,
) -> MaterializeResult:
    """Upload the artifact (multipart, weights last); identical weights already cached are not re-sent."""
    with submission_stage(context, store.store, Status.UPLOADING) as submission_id:
        with store.store.session() as session:
            sha256 = get_submission(session, submission_id).artifact_sha256
        staging = pipeline.submission_dir(submission_id)
        cached = upload_artifact(s3_cache.client(), s3_cache.bucket, staging / "tensorized", sha256)
        with store.store.session() as session:
            get_submission(session, submission_id).artifact_uri = cached.uri
        # The cache now holds the artifact; the local staging copy has done its job.
        shutil.rmtree(staging, ignore_errors=True)
    return MaterializeResult(
        metadata={
            "uri": cached.uri,
            "weights_uri": cached.weights_uri,
            "reused_cached_artifact": cached.reused,
            "uploaded_bytes": MetadataValue.int(cached.uploaded_bytes),
            "artifact_bytes": MetadataValue.int(cached.total_bytes),
            "upload_s": MetadataValue.float(round(cached.seconds, 3)),
            "upload_MB_per_s": MetadataValue.float(megabytes_per_s(cached.uploaded_bytes, cached.seconds)),
            "s3_endpoint": MetadataValue.url(s3_cache.endpoint_url) if s3_cache.endpoint_url else "default",
        }
    )
