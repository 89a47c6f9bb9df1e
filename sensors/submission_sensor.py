"""Spots new submissions: adds each as a dynamic partition and requests one pipeline run for it."""

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from assets.partitions import submissions_partitions
from guanaco_dagster.service.dagster_runs import SUBMISSION_SENSOR
from guanaco_dagster.submissions.submissions import PendingSubmission, pending_submissions
from resources import StoreResource
from sensors.jobs import UNTIL_DEPLOYED, submission_pipeline_job


def plan_submission_runs(pending: list[PendingSubmission], known_partitions: set[str]) -> list[str]:
    """The partitions to add for the pending submissions.

    Every pending submission gets a run request each tick, keyed by id (and attempt, for redeploys):
    Dagster launches one run per key, so repeats are free, and a row committed out of `seq` order
    (concurrent writers) is never skipped. That is why this sensor keeps no cursor. The service launches
    the same run as it records the submission (guanaco_dagster/service/run_launches.py), tagged with this
    sensor's name and the run key, so the daemon finds it by key and launches no second one.
    """
    return [p.id for p in pending if p.id not in known_partitions]


@sensor(
    name=SUBMISSION_SENSOR,
    job=submission_pipeline_job,
    minimum_interval_seconds=1,
    default_status=DefaultSensorStatus.RUNNING,
    description="New `pending` submissions → a partition and one pipeline run each (run_key = id).",
)
def submission_sensor(context: SensorEvaluationContext, store: StoreResource) -> SensorResult | SkipReason:
    with store.store.session() as session:
        pending = pending_submissions(session)
    if not pending:
        return SkipReason("no pending submissions")
    known = set(context.instance.get_dynamic_partitions(submissions_partitions.name))
    new_partitions = plan_submission_runs(pending, known)
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=item.run_key,
                partition_key=item.id,
                # The stress test follows in its own run (sensors/stress_test_sensor.py).
                asset_selection=UNTIL_DEPLOYED,
                tags={"guanaco/submission": item.id},
            )
            for item in pending
        ],
        dynamic_partitions_requests=[submissions_partitions.build_add_request(new_partitions)]
        if new_partitions
        else [],
    )
