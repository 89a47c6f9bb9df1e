"""The submission status lifecycle: one source of truth for statuses, stage order and legal moves."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    TENSORIZING = "tensorizing"
    UPLOADING = "uploading"
    DEPLOYING = "deploying"
    STRESS_TESTING = "stress_testing"
    DEPLOYED = "deployed"
    FAILED = "failed"
    INACTIVE = "inactive"
    TORNDOWN = "torndown"


# The pipeline's stages in order; each is the status a submission holds while that stage runs.
PIPELINE_STAGES: tuple[Status, ...] = (
    Status.DOWNLOADING,
    Status.TENSORIZING,
    Status.UPLOADING,
    Status.DEPLOYING,
    Status.STRESS_TESTING,
)
# Every status a successful submission passes through, in order.
HAPPY_PATH: tuple[Status, ...] = (Status.PENDING, *PIPELINE_STAGES, Status.DEPLOYED)
IN_PROGRESS: frozenset[Status] = frozenset({Status.PENDING, *PIPELINE_STAGES})
TERMINAL: frozenset[Status] = frozenset({Status.FAILED, Status.INACTIVE, Status.TORNDOWN})

_NEXT_STAGE = dict(zip((Status.PENDING, *PIPELINE_STAGES), (*PIPELINE_STAGES, Status.DEPLOYED), strict=True))


class InvalidTransition(ValueError):
    """A status change the lifecycle does not allow (e.g. a failed submission becoming deployed)."""


def allowed_targets(current: Status) -> frozenset[Status]:
    """The statuses a submission in `current` may move to."""
    targets: set[Status] = set()
    if current in IN_PROGRESS:
        targets |= {_NEXT_STAGE[current], Status.FAILED}
        # A resumed run re-enters a stage it was in (e.g. after the run process was killed).
        targets.add(current)
    if current == Status.DEPLOYED:
        # DEPLOYING: a heal restarts a dead server from the S3 cache (sensors/self_heal_sensor.py).
        targets |= {Status.INACTIVE, Status.TORNDOWN, Status.FAILED, Status.DEPLOYING}
    if current in {Status.INACTIVE, Status.TORNDOWN, Status.FAILED}:
        # Redeploy: the pipeline starts again from the top.
        targets |= {Status.PENDING}
    if current in {Status.INACTIVE, Status.FAILED}:
        targets.add(Status.TORNDOWN)
    return frozenset(targets)


def check_transition(current: Status, target: Status) -> None:
    """Raise InvalidTransition unless `current → target` is legal."""
    if target not in allowed_targets(current):
        raise InvalidTransition(f"cannot move a submission from '{current}' to '{target}'")
