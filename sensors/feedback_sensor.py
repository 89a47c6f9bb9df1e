"""Spots new feedback: re-materialises `feedback_summary` for each submission whose summary is stale."""

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from guanaco_dagster.feedback.feedback_report import submissions_with_new_feedback
from resources import StoreResource
from sensors.jobs import feedback_summary_job


@sensor(
    job=feedback_summary_job,
    minimum_interval_seconds=1,
    default_status=DefaultSensorStatus.RUNNING,
    description="Feedback count ≠ summarised count → one summary run per (submission, count).",
)
def feedback_sensor(context: SensorEvaluationContext, store: StoreResource) -> SensorResult | SkipReason:
    # Comparing counts, not a cursor, means feedback committed out of order is still summarised.
    with store.store.session() as session:
        stale = submissions_with_new_feedback(session)
    if not stale:
        return SkipReason("every feedback summary is up to date")
    return SensorResult(
        run_requests=[
            RunRequest(run_key=f"{sid}@{count}", partition_key=sid, tags={"guanaco/submission": sid})
            for sid, count in sorted(stale.items())
        ]
    )
