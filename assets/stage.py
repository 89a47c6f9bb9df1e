"""Shared plumbing of the pipeline assets: run a stage against the store, retry or fail it the one way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dagster import (
    AssetExecutionContext,
    AssetObservation,
    Failure,
    MetadataValue,
    RetryRequested,
)
from dagster._core.errors import DagsterInvalidPropertyError

from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import SubmissionEvent
from guanaco_dagster.submissions.failure import Leftovers, fail_submission
from guanaco_dagster.submissions.handoff import StageHandoff, read_handoff, record_handoff
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.reconciler import INTERRUPTED_MESSAGE
from guanaco_dagster.submissions.submissions import finish_stage, stage_failure_reason, start_stage

# Transient errors (Hub 5xx, dropped connections) wait 0.5 s, 1 s, 2 s, … between attempts.
RETRY_BASE_DELAY_S = 0.5


@dataclass(frozen=True)
class StageRun:
    """One stage of one submission: what earlier stages handed over, and a way to hand on."""

    store: Store
    handoff: StageHandoff

    @property
    def submission_id(self) -> str:
        return self.handoff.submission_id

    def record(self, **produced: str | None) -> None:
        """Hand what this stage produced to the stages after it (see submissions/handoff.py)."""
        with self.store.session() as session:
            record_handoff(session, self.submission_id, **produced)


@contextmanager
def submission_stage(
    context: AssetExecutionContext,
    store: Store,
    stage: Status,
    leftovers: Leftovers,
    *,
    attempts: int = 1,
) -> Iterator[StageRun]:
    """Run one stage for the context's partition: status and timing in the store.

    An error marked `transient` is retried by Dagster (`RetryRequested`, exponential backoff) until
    `attempts` are used; any other error, or the last attempt's, fails the submission through
    `fail_submission` and the step with a `Failure` whose description is the reason the developer sees.
    An interrupted run (the platform stopping) fails nothing: the reconciler resumes it.
    """
    submission_id = context.partition_key
    with store.session() as session:
        start_stage(session, submission_id, stage)
        handoff = read_handoff(session, submission_id)
    try:
        yield StageRun(store, handoff)
    except Exception as error:
        with store.session() as session:
            finish_stage(session, submission_id, stage, succeeded=False)
        reason = stage_failure_reason(stage, error, submission_id)
        if getattr(error, "transient", False) and (attempt := context.retry_number + 1) < attempts:
            _log_retry(store, submission_id, stage, f"attempt {attempt} of {attempts} failed: {reason}")
            raise RetryRequested(
                max_retries=attempts - 1, seconds_to_wait=RETRY_BASE_DELAY_S * 2 ** (attempt - 1)
            ) from error
        fail_submission(store, submission_id, reason, leftovers)
        context.log.error(reason)
        metadata = {"submission": submission_id, "reason": MetadataValue.text(reason)}
        if getattr(error, "log_tail", ""):
            metadata["server_log"] = MetadataValue.md(f"```\n{error.log_tail}\n```")
        _show_failure_on_partition(context, reason, metadata)
        raise Failure(description=reason, metadata=metadata, allow_retries=False) from error
    except BaseException:
        # The run was interrupted (the platform stopping): the model is not to blame, so nothing fails;
        # the reconciler resumes the stage once the platform is back.
        with store.session() as session:
            finish_stage(session, submission_id, stage, succeeded=False)
            session.add(
                SubmissionEvent(submission_id=submission_id, status=stage, message=INTERRUPTED_MESSAGE)
            )
        raise
    with store.session() as session:
        finish_stage(session, submission_id, stage, succeeded=True)


def _show_failure_on_partition(
    context: AssetExecutionContext, reason: str, metadata: dict[str, object]
) -> None:
    """Record the reason on the asset's partition, where the Dagster UI shows it, not only in the run's logs.

    Dagster 1.13's own "failed to materialize" events are not stored by the open-source event log (its
    `can_store_asset_failure_events` is false), so an observation carries the reason: the partition's page
    lists it under "View all historical events" and the asset's Events tab shows it with its description.
    `log_event` writes it at once, so it is kept although the step fails right after.
    """
    try:
        asset_key = context.asset_key
    except DagsterInvalidPropertyError:
        # A context not bound to an asset (a stage invoked directly): the failure itself must still be
        # reported, the UI annotation is all that is lost.
        return
    context.log_event(
        AssetObservation(
            asset_key=asset_key,
            partition=context.partition_key,
            description=f"Failed: {reason}",
            metadata=metadata,
        )
    )


def _log_retry(store: Store, submission_id: str, stage: Status, message: str) -> None:
    # A status event, so `guanaco logs` shows the developer why the stage takes longer.
    with store.session() as session:
        session.add(
            SubmissionEvent(submission_id=submission_id, status=stage, message=f"retrying: {message}")
        )


def markdown_table(rows: dict[str, object]) -> MetadataValue:
    """A two-column markdown table for the Dagster UI."""
    lines = ["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows.items())]
    return MetadataValue.md("\n".join(lines))


def megabytes_per_s(num_bytes: int, seconds: float) -> float:
    """Throughput rounded for display; 0 when nothing was timed."""
    return round(num_bytes / 1e6 / seconds, 1) if seconds > 0 else 0.0
