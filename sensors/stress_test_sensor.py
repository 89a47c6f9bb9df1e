"""Once a submission's pipeline run has deployed its model, start the run that stress-tests it.

The pipeline run launches that run itself as its deployment starts (assets/live_deployment.py), tagged with
this sensor's name and run key: the sensor then finds it by key and launches nothing; it launches the run
when the webserver could not be reached.
"""

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SkipReason,
    run_status_sensor,
)

from guanaco_dagster.service.dagster_runs import STRESS_TEST_SENSOR, stops_at_deployment, stress_test_run_key
from sensors.jobs import STRESS_TEST, submission_pipeline_job


def stress_test_request(
    first_run_id: str, asset_selection: set | None, tags: dict[str, str]
) -> RunRequest | None:
    """The stress-test run owed to a succeeded pipeline run that deployed a model and stopped there."""
    selection = {key.to_user_string() for key in asset_selection or ()}
    submission_id = tags.get("dagster/partition")
    if not submission_id or not stops_at_deployment(selection):
        return None
    return RunRequest(
        run_key=stress_test_run_key(first_run_id),
        partition_key=submission_id,
        asset_selection=STRESS_TEST,
        tags={"guanaco/submission": submission_id},
    )


@run_status_sensor(
    name=STRESS_TEST_SENSOR,
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[submission_pipeline_job],
    request_job=submission_pipeline_job,
    minimum_interval_seconds=1,
    default_status=DefaultSensorStatus.RUNNING,
    description="A pipeline run that deployed a model → the stress test run: latency_report with its "
    "blocking SLO check, then the first feedback summary.",
)
def stress_test_sensor(context: RunStatusSensorContext) -> RunRequest | SkipReason:
    run = context.dagster_run
    # Keyed by the first of a run's retries, like the launch from the deployment step.
    request = stress_test_request(run.root_run_id or run.run_id, run.asset_selection, dict(run.tags))
    return request or SkipReason(f"run {run.run_id[:8]} did not stop at the deployment")
