"""`cached_s3_object`: the artifact in the S3 cache under a content-addressed prefix."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.metadata import upload_metadata
from assets.partitions import submissions_partitions
from assets.stage import submission_stage
from assets.tensorized_artifact import tensorized_artifact
from guanaco_dagster.stages.s3_cache import upload_artifact
from guanaco_dagster.submissions.lifecycle import Status
from resources import DeployerResource, PipelineConfigResource, S3CacheResource, StoreResource
from resources.leftovers import leftovers_of


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
    deployer: DeployerResource,
) -> MaterializeResult:
    """Upload the artifact (multipart, weights last); identical weights already cached are not re-sent."""
    # The deployer too: a failure here stops the server prestarted for this submission.
    leftovers = leftovers_of(deployer=deployer, s3_cache=s3_cache, pipeline=pipeline)
    with submission_stage(context, store.store, Status.UPLOADING, leftovers) as stage:
        staged = pipeline.staging.tensorized_dir(stage.submission_id)
        cached = upload_artifact(s3_cache.client(), s3_cache.bucket, staged, stage.handoff.artifact_sha256)
        stage.record(artifact_uri=cached.uri)
        # The cache now holds the artifact; the local staging copy has done its job.
        pipeline.staging.clear(stage.submission_id)
    return MaterializeResult(metadata=upload_metadata(cached, s3_cache.endpoint_url))
