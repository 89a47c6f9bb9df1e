"""The one way a submission fails: record the reason, then remove everything it left behind.

Every writer of failure (a stage that gave up, the run-failure sensor, the reconciler) goes through
`fail_submission`, so a failed submission always ends the same way: `failed` with a reason the developer
can act on, no server, no staged files, and no cached artifact that no live submission uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.stages.staging import StagingLayout
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Submission
from guanaco_dagster.submissions.lifecycle import IN_PROGRESS, Status
from guanaco_dagster.submissions.submissions import get_submission, mark_failed

logger = logging.getLogger(__name__)

# Submissions that still need their cached artifact (a redeploy of an ended one uploads it again).
LIVE_STATUSES = frozenset({*IN_PROGRESS, Status.DEPLOYED})


@dataclass(frozen=True)
class Leftovers:
    """How to remove what a failed submission may have left; the parts a caller cannot reach stay None."""

    teardown_server: Callable[[str], object] | None = None  # submission id → server stopped
    staging: StagingLayout | None = None
    delete_artifact: Callable[[str], int] | None = None  # artifact digest → objects deleted

    @classmethod
    def of(cls, deployer: Deployer, staging: StagingLayout | None = None) -> Leftovers:
        """Leftovers reachable through a deployer (and a staging layout)."""
        return cls(teardown_server=deployer.teardown, staging=staging)

    def remove(self, submission_id: str, unshared_digest: str | None) -> None:
        """Stop the server, clear the staging folder and delete the artifact if nobody else uses it."""
        if self.teardown_server is not None:
            self.teardown_server(submission_id)
        if self.staging is not None:
            self.staging.clear(submission_id)
        if self.delete_artifact is not None and unshared_digest:
            try:
                self.delete_artifact(unshared_digest)
            except Exception:  # noqa: BLE001 - a cache we cannot reach must not hide the failure itself
                logger.exception("could not delete the cached artifact %s", unshared_digest)


def artifact_shared(session: Session, submission_id: str, digest: str) -> bool:
    """Does another live submission use the artifact with this content address?"""
    other = session.scalar(
        select(Submission.id).where(
            Submission.artifact_sha256 == digest,
            Submission.id != submission_id,
            Submission.status.in_([str(status) for status in LIVE_STATUSES]),
        )
    )
    return other is not None


def fail_submission(
    store: Store,
    submission_id: str,
    reason: str,
    leftovers: Leftovers,
    *,
    unless: Callable[[Submission], bool] | None = None,
) -> bool:
    """Fail the submission with `reason` and remove its leftovers; False when it had already ended.

    `unless(submission)`, checked under the row lock, leaves a submission alone that moved on meanwhile
    (e.g. one that reached `deployed` while a sensor looked at its failed run).
    """
    with store.session() as session:
        submission = get_submission(session, submission_id, for_update=True)
        if unless is not None and unless(submission):
            return False
        failed = mark_failed(session, submission_id, reason)
        digest = submission.artifact_sha256
        if digest and artifact_shared(session, submission_id, digest):
            digest = None
    leftovers.remove(submission_id, digest)
    return failed
