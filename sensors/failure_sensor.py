"""Safety net: a pipeline run that died (crash, killed process) fails its submission and frees its server."""

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.domain.submissions import SubmissionNotFound, get_submission, mark_failed
from resources import DeployerResource, StoreResource
from sensors.jobs import submission_pipeline_job


@run_failure_sensor(
    monitored_jobs=[submission_pipeline_job],
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=1,
)
def pipeline_failure_sensor(
    context: RunFailureSensorContext, store: StoreResource, deployer: DeployerResource
) -> None:
    submission_id = context.dagster_run.tags.get("dagster/partition")
    if not submission_id:
        return
    reason = context.failure_event.message or "the pipeline run failed"
    with store.store.session() as session:
        try:
            submission = get_submission(session, submission_id)
        except SubmissionNotFound:
            return
        if submission.status == Status.DEPLOYED:
            return
        mark_failed(session, submission_id, f"pipeline run {context.dagster_run.run_id[:8]} failed: {reason}")
    deployer.get_deployer().teardown(submission_id)
