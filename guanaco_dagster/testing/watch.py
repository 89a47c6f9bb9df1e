"""Wait for a submission to reach a status, for its feedback to be readable, for its summary to appear."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from guanaco_dagster.cli.client import GuanacoClient
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import FeedbackSummaryRow
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import get_submission
from guanaco_dagster.submissions.waterfall import StageRow, stage_waterfall

Observer = Callable[[str, list[StageRow]], None]


def wait_for_outcome(
    store: Store,
    submission_id: str,
    timeout_s: float,
    on_change: Observer | None = None,
    health_check: Callable[[], None] | None = None,
) -> str:
    """Poll until the submission is `deployed` or `failed`; return that status (TimeoutError otherwise)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with store.session() as session:
            submission = get_submission(session, submission_id)
            status, rows = submission.status, stage_waterfall(submission)
        if on_change:
            on_change(status, rows)
        if status in (Status.DEPLOYED, Status.FAILED):
            return status
        if health_check:
            health_check()
        time.sleep(0.25)
    raise TimeoutError(f"{submission_id} still '{status}' after {timeout_s:.0f} s")


def wait_for_summary(
    store: Store, submission_id: str, min_feedback: int, timeout_s: float
) -> tuple[dict, datetime]:
    """Poll until the stored feedback summary covers at least `min_feedback` posts; return it and its time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with store.session() as session:
            row = session.get(FeedbackSummaryRow, submission_id)
            if row is not None and row.feedback_count >= min_feedback:
                return row.summary, row.computed_at
        time.sleep(0.25)
    raise TimeoutError(
        f"no feedback summary with {min_feedback} post(s) for {submission_id} after {timeout_s:.0f} s"
    )


def _poll(check: Callable[[], datetime | None], timeout_s: float, what: str) -> datetime:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"{what} not seen within {timeout_s:.0f} s")


def wait_for_feedback_readable(client: GuanacoClient, submission_id: str, timeout_s: float) -> datetime:
    """Poll `GET /feedback/{id}` as the developer's `guanaco feedback` does; when feedback first showed."""

    def check() -> datetime | None:
        return datetime.now(UTC) if client.feedback(submission_id).feedback else None

    return _poll(check, timeout_s, f"feedback on {submission_id} for its developer")


def wait_for_summary_in_dagster(dagster_home: Path, submission_id: str, timeout_s: float) -> datetime:
    """When Dagster recorded the partition's first `feedback_summary` materialisation that counts feedback
    (the pipeline materialises an empty one when the model is deployed)."""
    from dagster import AssetKey, DagsterInstance
    from dagster._core.event_api import AssetRecordsFilter

    summaries = AssetRecordsFilter(asset_key=AssetKey("feedback_summary"), asset_partitions=[submission_id])
    # Opening an instance prints storage notes of its own; they mean nothing here.
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet, DagsterInstance.from_config(str(dagster_home)) as instance:

        def check() -> datetime | None:
            records = instance.fetch_materializations(summaries, limit=50, ascending=True).records
            times = [
                datetime.fromtimestamp(record.timestamp, UTC)
                for record in records
                if (count := record.asset_materialization.metadata.get("feedback_count")) is not None
                and count.value >= 1
            ]
            return min(times, default=None)

        return _poll(check, timeout_s, f"a feedback_summary with feedback for {submission_id} in Dagster")
