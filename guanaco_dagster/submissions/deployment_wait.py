"""Wait for a submission's deployment to succeed before stress-testing it.

The stress-test run is launched when the deployment starts, not when it ends, so its run worker starts while
the model server loads (a whole run start, ~2–6 s, off the path to the first feedback); its first step
waits here for the deployment's outcome in the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select

from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import StageTiming
from guanaco_dagster.submissions.lifecycle import TERMINAL, Status
from guanaco_dagster.submissions.submissions import get_submission

POLL_S = 0.2


class DeploymentNotSucceeded(RuntimeError):
    """The deployment failed, was stopped, or did not finish in time: there is nothing to stress-test."""


def wait_for_deployment(
    store: Store,
    submission_id: str,
    timeout_s: float,
    on_wait: Callable[[], None] = lambda: None,
) -> float:
    """Return the seconds waited once the submission's `deploying` stage has succeeded.

    A stage that never started (nothing recorded) is not waited for. An interrupted deployment (stage
    failed, submission not ended) is waited for: the reconciler or a run retry resumes it. `on_wait` is
    called once, when there is something to wait for.
    """
    started = time.monotonic()
    waiting = False
    while True:
        with store.session() as session:
            timing = session.scalar(
                select(StageTiming).where(
                    StageTiming.submission_id == submission_id, StageTiming.stage == Status.DEPLOYING
                )
            )
            submission = get_submission(session, submission_id)
            status, reason = Status(submission.status), submission.failure_reason
            finished, succeeded = (timing.finished_at, timing.succeeded) if timing else (None, None)
        if timing is None or succeeded:
            return time.monotonic() - started
        if status in TERMINAL:
            raise DeploymentNotSucceeded(
                f"not stress-tested: the submission is {status}" + (f": {reason}" if reason else "")
            )
        if time.monotonic() - started > timeout_s:
            state = "was interrupted" if finished else "is still running"
            raise DeploymentNotSucceeded(
                f"not stress-tested: the deployment {state} after {timeout_s:.0f} s of waiting"
            )
        if not waiting:
            waiting = True
            on_wait()
        time.sleep(POLL_S)
