"""Safety net: a pipeline run that died (crash, killed process) fails its submission and frees its things."""

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor
from dagster._core.storage.tags import WILL_RETRY_TAG

from guanaco_dagster.submissions.failure import fail_submission
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.reconciler import was_interrupted
from guanaco_dagster.submissions.submissions import SubmissionNotFound
from resources import DeployerResource, PipelineConfigResource, S3CacheResource, StoreResource
from resources.leftovers import leftovers_of
from sensors.jobs import submission_pipeline_job


@run_failure_sensor(
    monitored_jobs=[submission_pipeline_job],
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=1,
)
def pipeline_failure_sensor(
    context: RunFailureSensorContext,
    store: StoreResource,
    deployer: DeployerResource,
    s3_cache: S3CacheResource,
    pipeline: PipelineConfigResource,
) -> None:
    tags = context.dagster_run.tags
    submission_id = tags.get("dagster/partition")
    # A run that crashed outside its steps is re-executed from failure by Dagster's run retries
    # (dagster.yaml `run_retries`); the submission fails only if that last retry fails too.
    if not submission_id or tags.get(WILL_RETRY_TAG) == "true":
        return
    reason = context.failure_event.message or "the pipeline run failed"
    try:
        fail_submission(
            store.store,
            submission_id,
            f"pipeline run {context.dagster_run.run_id[:8]} failed: {reason}",
            leftovers_of(deployer=deployer, s3_cache=s3_cache, pipeline=pipeline),
            # A failed heal or summary step of a model that serves must not take it away from users, and a
            # run the platform interrupted is resumed by the reconciler, not blamed on the model.
            unless=lambda submission: submission.status == Status.DEPLOYED or was_interrupted(submission),
        )
    except SubmissionNotFound:
        return
