"""Spots new feedback: one bounded run at a time refreshes the summaries that are out of date.

Under steady feedback a run per (submission, count) would grow the run queue without bound (each run a pod
on Kubernetes). Instead, while a batch is queued or running nothing more is requested; the next tick after
it ends takes the next `FEEDBACK_BATCH_MAX` stale summaries, longest-waiting first, so every summary
converges to its submission's final count.
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
from resources import StoreResource
from sensors.jobs import FeedbackBatchConfig, summarise_feedback_batch

# Summaries per run: each is a few queries, so a batch takes seconds, not minutes.
FEEDBACK_BATCH_MAX = 50
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def batch_run_request(submission_ids: list[str], batch_number: int) -> RunRequest:
    """The run that refreshes `submission_ids` (run key: the batch's number, kept in the cursor)."""
    return RunRequest(
        run_key=f"feedback-batch-{batch_number}",
        run_config=RunConfig(ops={"summarise_feedback": FeedbackBatchConfig(submission_ids=submission_ids)}),
        tags={
            "guanaco/feedback-batch-size": str(len(submission_ids)),
            # A batch of one is findable by its submission in the Dagster UI, like the pipeline's runs.
            **({"guanaco/submission": submission_ids[0]} if len(submission_ids) == 1 else {}),
        },
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
