"""Shared plumbing of the pipeline assets: run a stage against the store, fail with a readable reason."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import AssetExecutionContext, Failure, MetadataValue

from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.domain.submissions import run_stage, stage_failure_reason
from guanaco_dagster.store.database import Store


@contextmanager
def submission_stage(context: AssetExecutionContext, store: Store, stage: Status) -> Iterator[str]:
    """Run one stage for the context's partition; yields the submission id.

    Errors fail the submission in the store (with the reason the developer sees) and the Dagster step
    (as a `Failure` whose description is that reason, so Dagit shows the same words).
    """
    submission_id = context.partition_key
    try:
        with run_stage(store, submission_id, stage):
            yield submission_id
    except Failure:
        raise
    except Exception as error:
        reason = stage_failure_reason(stage, error)
        context.log.error(reason)
        raise Failure(
            description=reason,
            metadata={"submission": submission_id, "reason": MetadataValue.text(reason)},
            allow_retries=False,
        ) from error


def markdown_table(rows: dict[str, object]) -> MetadataValue:
    """A two-column markdown table for Dagit."""
    lines = ["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows.items())]
    return MetadataValue.md("\n".join(lines))


def megabytes_per_s(num_bytes: int, seconds: float) -> float:
    """Throughput rounded for display; 0 when nothing was timed."""
    return round(num_bytes / 1e6 / seconds, 1) if seconds > 0 else 0.0
