"""`live_deployment`: an inference server streaming the artifact from S3, healthy and reachable."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.cached_s3_object import cached_s3_object
from assets.partitions import submissions_partitions
from assets.stage import submission_stage
from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.domain.submissions import get_submission
from resources import DeployerResource, StoreResource


@asset(
    partitions_def=submissions_partitions,
    deps=[cached_s3_object],
    group_name="submission_pipeline",
    kinds={"vllm"},
)
def live_deployment(
    context: AssetExecutionContext, store: StoreResource, deployer: DeployerResource
) -> MaterializeResult:
    """Start (or find) the submission's vLLM server and wait until it answers its health check."""
    with submission_stage(context, store.store, Status.DEPLOYING) as submission_id:
        with store.store.session() as session:
            artifact_uri = get_submission(session, submission_id).artifact_uri
        spec = DeploymentSpec(
            submission_id=submission_id, artifact_uri=artifact_uri, served_model_name=submission_id
        )
        deployment = deployer.get_deployer().deploy(spec)
        with store.store.session() as session:
            submission = get_submission(session, submission_id)
            submission.endpoint_url = deployment.endpoint_url
            submission.served_model_name = spec.served_model_name
    return MaterializeResult(
        metadata={
            "endpoint": MetadataValue.url(deployment.endpoint_url),
            "deployer": deployer.kind,
            "startup_s": MetadataValue.float(round(deployment.startup_s, 2)),
            "artifact_uri": artifact_uri,
            "served_model_name": submission_id,
            "details": MetadataValue.json(deployment.details),
        }
    )
