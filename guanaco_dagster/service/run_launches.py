"""Launch runs from the service at once instead of waiting for a sensor tick.

The sensors launch the same runs, but Dagster's sensor loop runs at most every 5 s: a new submission waited
up to ~8 s before its run was even queued, and the first feedback a whole tick before its summary started.
The service asks the Dagster webserver directly instead (guanaco_dagster/service/dagster_runs.py). The
sensors stay the safety net: when the webserver is down or a launch fails, nothing is lost, their next tick
launches the run.

No submission runs twice: its run is created *before* the submission row is committed, so the submission
sensor can only see the row once that run exists, and the run carries the tags the sensor's run-key dedupe
looks for (`dagster/run_key` + `dagster/sensor_name`: the daemon's `fetch_existing_runs`). No feedback batch
runs beside another: see `FeedbackLaunches`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from guanaco_dagster.feedback.feedback_report import submissions_with_new_feedback
from guanaco_dagster.service.dagster_runs import DagsterRuns, DagsterUnavailable
from guanaco_dagster.service.dependencies import get_settings
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.models import Conversation
from guanaco_dagster.submissions.submissions import PendingSubmission

logger = logging.getLogger(__name__)


def launch_submission_now(runs: DagsterRuns | None, pending: PendingSubmission) -> str | None:
    """Launch the submission's pipeline run at once; None (and a log line) when that fails.

    Call it before the submission row is committed: see the module's docstring.
    """
    if runs is None:
        return None
    try:
        run_id = runs.launch_submission_run(pending)
    except DagsterUnavailable as error:
        logger.warning("%s; the submission sensor will launch %s", error, pending.run_key)
        return None
    logger.info("launched run %s for %s", run_id, pending.run_key)
    return run_id


@dataclass
class FeedbackLaunches:
    """Launches a feedback batch when feedback arrives and nothing else would summarise it soon.

    `storing()` wraps storing one feedback and committing it. Inside it, at most one request of this process
    decides at a time, and it launches a batch only when no batch is in flight and no summary is waiting
    (those are the feedback sensor's: its next batch takes this feedback too). Since no feedback of this
    process is committed while a launch is decided, the sensor never sees a stale summary that a batch about
    to be created will cover, so the two never put two batches in flight. A "not now" is remembered for
    `recheck_s`, so under steady feedback the webserver is asked about once a second, not per feedback.
    """

    runs: DagsterRuns
    recheck_s: float = 1.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _quiet_until: float = 0.0

    @contextmanager
    def storing(self, submission_id: str, waiting_summaries: Callable[[], bool]) -> Iterator[None]:
        """Hold the launch decision while the caller stores and commits feedback for `submission_id`.

        `waiting_summaries` says whether any committed feedback is not yet summarised (read before this
        feedback is stored).
        """
        with self._lock:
            launch = self._should_launch(waiting_summaries)
            if launch:
                try:
                    run_id = self.runs.launch_feedback_batch([submission_id])
                    logger.info("launched feedback batch %s for %s", run_id, submission_id)
                except DagsterUnavailable as error:
                    logger.warning("%s; the feedback sensor will summarise %s", error, submission_id)
                self._quiet_until = time.monotonic() + self.recheck_s
            yield

    def _should_launch(self, waiting_summaries: Callable[[], bool]) -> bool:
        if time.monotonic() < self._quiet_until:
            return False
        try:
            busy = self.runs.feedback_batch_in_flight() or waiting_summaries()
        except DagsterUnavailable as error:
            logger.warning("%s; the feedback sensor will summarise new feedback", error)
            busy = True
        if busy:
            self._quiet_until = time.monotonic() + self.recheck_s
        return not busy


# One client and one `FeedbackLaunches` per webserver per process: their back-off and lock are shared by
# every request.
_clients: dict[str, DagsterRuns] = {}
_feedback_launches: dict[str, FeedbackLaunches] = {}
_registry_lock = threading.Lock()


def get_dagster_runs(settings: Annotated[Settings, Depends(get_settings)]) -> DagsterRuns | None:
    """The webserver to launch runs through (GUANACO_DAGSTER_GRAPHQL_URL); None: the sensors launch them."""
    url = settings.dagster_graphql_url
    if not url:
        return None
    with _registry_lock:
        return _clients.setdefault(url, DagsterRuns(url))


def get_feedback_launches(
    runs: Annotated[DagsterRuns | None, Depends(get_dagster_runs)],
) -> FeedbackLaunches | None:
    """The process's `FeedbackLaunches` for the configured webserver; None without one."""
    if runs is None:
        return None
    with _registry_lock:
        return _feedback_launches.setdefault(runs.graphql_url, FeedbackLaunches(runs))


DagsterRunsDep = Annotated[DagsterRuns | None, Depends(get_dagster_runs)]
FeedbackLaunchesDep = Annotated[FeedbackLaunches | None, Depends(get_feedback_launches)]


def storing_feedback(
    launches: FeedbackLaunches | None, session: Session, conversation_id: str
) -> AbstractContextManager[None]:
    """Wrap storing and committing feedback on a conversation: its summary may be launched at once."""
    submission_id = session.scalar(
        select(Conversation.submission_id).where(Conversation.id == conversation_id)
    )
    if launches is None or submission_id is None:
        return nullcontext()
    return launches.storing(submission_id, lambda: bool(submissions_with_new_feedback(session)))
