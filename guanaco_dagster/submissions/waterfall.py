"""The stage waterfall: when each stage of a submission's current attempt started and how long it took.

Pure functions over a loaded submission (its events and stage timings); kept apart from the store code so
the CLI can render waterfalls without importing SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from guanaco_dagster.submissions.lifecycle import Status

if TYPE_CHECKING:
    from guanaco_dagster.store.models import Submission


@dataclass(frozen=True)
class StageRow:
    """One bar of the stage waterfall: offsets are seconds since submission."""

    stage: str
    start_offset_s: float
    duration_s: float | None
    succeeded: bool | None


def attempt_started_at(submission: Submission) -> datetime:
    """When the current trip through the pipeline began: the last `pending` (a redeploy starts a new one)."""
    pending = [e.at for e in submission.events if e.status == Status.PENDING]
    return max(pending, default=submission.created_at)


def time_to_deployed_s(submission: Submission) -> float | None:
    """Seconds from the current attempt's start to `deployed`, if it got there."""
    started = attempt_started_at(submission)
    deployed = [e.at for e in submission.events if e.status == Status.DEPLOYED and e.at >= started]
    return (min(deployed) - started).total_seconds() if deployed else None


def stage_waterfall(submission: Submission) -> list[StageRow]:
    """The current attempt's stages as a waterfall (start offset and duration), in pipeline order."""
    started = attempt_started_at(submission)
    rows = []
    for timing in sorted(submission.stages, key=lambda t: t.started_at):
        duration = (timing.finished_at - timing.started_at).total_seconds() if timing.finished_at else None
        offset = (timing.started_at - started).total_seconds()
        rows.append(
            StageRow(timing.stage, round(offset, 3), duration and round(duration, 3), timing.succeeded)
        )
    return rows
