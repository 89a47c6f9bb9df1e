"""Self-healing: a deployed model whose server died is restarted from the S3 cache, a bounded number of times.

Plain functions; the sensor (`sensors/self_heal_sensor.py`) turns each heal into a Dagster run that
re-materialises `live_deployment` and `latency_report` for the model's partition. A heal is a status event
(`deployed → deploying`, message starting with HEAL_MESSAGE) the developer sees in `guanaco logs`; the
events also count the attempts. Once `max_heals_per_hour` is spent, the model is `failed` with the cause
read from its server's log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guanaco_dagster.beta.health import HealthConfig, HealthSettings, failing_models, reset_health
from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.deployment.server_log import failure_reason
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import SubmissionEvent, utcnow
from guanaco_dagster.submissions.failure import Leftovers, fail_submission
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.lifecycle_requests import open_request_for
from guanaco_dagster.submissions.submissions import get_submission, transition

logger = logging.getLogger(__name__)

# Heal events start with this, so the attempts can be counted from the submission's log.
HEAL_MESSAGE = "model server died; restarting it from the S3 cache"


@dataclass(frozen=True)
class Heal:
    """A restart the store has recorded; a run must now redeploy the model. `attempt` counts all heals."""

    submission_id: str
    attempt: int

    @property
    def run_key(self) -> str:
        return f"{self.submission_id}#heal-{self.attempt}"


@dataclass
class HealOutcome:
    """What one pass did: heals to run, models failed (id → reason), models left alone (id → why)."""

    heals: list[Heal] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the sensor's tick."""
        if not (self.heals or self.failed or self.skipped):
            return "every deployed model passes its health check"
        return f"{len(self.heals)} healed, {len(self.failed)} failed, {len(self.skipped)} left alone"


def death_cause(log_text: str, health_detail: str) -> str:
    """Why the server died: the telling line of its log, else what its health check saw."""
    return (
        failure_reason(log_text) or f"the model server stopped answering its health check ({health_detail})"
    )


def heals_since(session: Session, submission_id: str, since: datetime | None = None) -> int:
    """How many heals the submission had (since `since`, or ever)."""
    query = select(func.count()).where(
        SubmissionEvent.submission_id == submission_id, SubmissionEvent.message.startswith(HEAL_MESSAGE)
    )
    if since is not None:
        query = query.where(SubmissionEvent.at >= since)
    return int(session.scalar(query) or 0)


def heal_dead_models(
    store: Store,
    deployer: Deployer,
    settings: HealthConfig | None = None,
    now: datetime | None = None,
    leftovers: Leftovers | None = None,
) -> HealOutcome:
    """Restart (past the hourly budget: fail) each deployed model failing its check for `heal_after_s`.

    A model that has used its budget fails through `fail_submission` with `leftovers` (default: its server).
    """
    settings = settings or HealthSettings()
    leftovers = leftovers or Leftovers.of(deployer)
    now = now or utcnow()
    outcome = HealOutcome()
    with store.session() as session:
        failing = failing_models(session, settings.heal_after_s, now)
    for model in failing:
        if deployer.get(model.submission_id) is not None:
            # The deployer reaches it: a blip seen by the watcher only, which its next check clears.
            outcome.skipped[model.submission_id] = "its server answers the deployer"
            continue
        cause = death_cause(deployer.last_log_lines(model.submission_id), model.detail)
        reason = ""
        with store.session() as session:
            submission = get_submission(session, model.submission_id, for_update=True)
            if submission.status != Status.DEPLOYED or submission.health_ok is not False:
                continue  # changed since it was listed (redeployed, deactivated, checked healthy)
            if open_request_for(session, model.submission_id) is not None:
                outcome.skipped[model.submission_id] = "a lifecycle request is in progress"
                continue
            recent = heals_since(session, model.submission_id, now - timedelta(hours=1))
            reset_health(submission)
            if recent >= settings.max_heals_per_hour:
                reason = (
                    f"{cause}: the model server died {recent + 1} times within an hour and was restarted "
                    f"{recent} times; fix the model, then `guanaco redeploy {model.submission_id}`"
                )
                outcome.failed[model.submission_id] = reason
            else:
                attempt = heals_since(session, model.submission_id) + 1
                message = (
                    f"{HEAL_MESSAGE} (restart {recent + 1} of at most {settings.max_heals_per_hour} "
                    f"per hour): {cause}"
                )
                transition(session, model.submission_id, Status.DEPLOYING, message=message)
                outcome.heals.append(Heal(model.submission_id, attempt))
        if reason:
            fail_submission(
                store, model.submission_id, reason, leftovers, unless=lambda s: s.status != Status.DEPLOYED
            )
            continue
        # Whatever is left of the old server (a hung process, a Deployment) goes; the heal starts afresh.
        deployer.teardown(model.submission_id)
    return outcome
