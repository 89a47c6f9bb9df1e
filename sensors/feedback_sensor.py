"""Spots new feedback: one bounded run at a time refreshes the summaries that are out of date.

Under steady feedback a run per (submission, count) would grow the run queue without bound (each run a pod
on Kubernetes). Instead, while a batch is queued or running nothing more is requested; the next tick after
it ends takes the next `FEEDBACK_BATCH_MAX` stale summaries, longest-waiting first, so every summary
converges to its submission's final count.

The service launches a batch itself when feedback arrives and nothing is in flight or waiting
(guanaco_dagster/service/run_launches.py); its runs count as in flight here too. They carry no run key of
this sensor, so they never take a `feedback-batch-N` key from the cursor's sequence.
"""

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunConfig,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from guanaco_dagster.feedback.feedback_report import stale_summaries_oldest_first
from guanaco_dagster.service.dagster_runs import IN_FLIGHT_STATUSES, feedback_batch_tags
from resources import StoreResource
from sensors.jobs import FeedbackBatchConfig, summarise_feedback_batch

# Summaries per run: each is a few queries, so a batch takes seconds, not minutes.
FEEDBACK_BATCH_MAX = 50
# The service counts the same runs as in flight before it launches a batch of its own.
IN_FLIGHT = [DagsterRunStatus(status) for status in IN_FLIGHT_STATUSES]


def batch_run_request(submission_ids: list[str], batch_number: int) -> RunRequest:
    """The run that refreshes `submission_ids` (run key: the batch's number, kept in the cursor)."""
    return RunRequest(
        run_key=f"feedback-batch-{batch_number}",
        run_config=RunConfig(ops={"summarise_feedback": FeedbackBatchConfig(submission_ids=submission_ids)}),
        tags=feedback_batch_tags(submission_ids),
    )


@sensor(
    job=summarise_feedback_batch,
    minimum_interval_seconds=1,
    default_status=DefaultSensorStatus.RUNNING,
    description=f"Feedback count ≠ summarised count → one run refreshing up to {FEEDBACK_BATCH_MAX} "
    "summaries, never while another is in flight.",
)
def feedback_sensor(context: SensorEvaluationContext, store: StoreResource) -> SensorResult | SkipReason:
    # Comparing counts, not a cursor over feedback, means feedback committed out of order is still summarised.
    with store.store.session() as session:
        stale = stale_summaries_oldest_first(session, FEEDBACK_BATCH_MAX)
    if not stale:
        return SkipReason("every feedback summary is up to date")
    in_flight = context.instance.get_runs_count(
        RunsFilter(job_name=summarise_feedback_batch.name, statuses=IN_FLIGHT)
    )
    if in_flight:
        return SkipReason(f"stale summaries wait for the batch in flight ({len(stale)} or more)")
    batch_number = int(context.cursor or 0) + 1
    return SensorResult(run_requests=[batch_run_request(stale, batch_number)], cursor=str(batch_number))
