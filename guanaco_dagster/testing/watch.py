"""Wait on the store for a submission to reach a status or a feedback summary to appear."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

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
