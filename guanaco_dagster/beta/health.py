"""Health of deployed model servers: probe one endpoint, record the result, say which models routing may use.

The service's watcher (`health_watcher.py`) probes every deployed model every couple of seconds; the
service marks a model unhealthy at once when a user's call to it fails; the self-heal sensor restarts
models whose check has failed for a while. A model never checked yet (just deployed) counts as healthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from guanaco_dagster.store.models import Submission, utcnow
from guanaco_dagster.submissions.lifecycle import Status

DETAIL_MAX_CHARS = 300


class HealthConfig(BaseModel):
    """How often deployed servers are checked and how a dead one is healed."""

    check_interval_s: float = Field(
        default=2.0, ge=0, description="Seconds between two checks of every deployed server; 0 = no watcher."
    )
    check_timeout_s: float = Field(default=1.5, gt=0, description="A check slower than this fails.")
    heal_after_s: float = Field(
        default=5.0, ge=0, description="A server failing its check for this long is restarted from the cache."
    )
    max_heals_per_hour: int = Field(
        default=3, ge=0, description="Restarts of one model per hour before it is failed with the cause."
    )


class HealthSettings(HealthConfig, BaseSettings):
    """`HealthConfig` read from `GUANACO_HEALTH_*` environment variables (the service's watcher)."""

    model_config = SettingsConfigDict(env_prefix="GUANACO_HEALTH_", extra="ignore")


@dataclass(frozen=True)
class ProbeResult:
    """One health check: `ok`, or why not in a few words (`detail`)."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class WatchedModel:
    """A deployed model the watcher checks."""

    submission_id: str
    endpoint_url: str


@dataclass(frozen=True)
class FailingModel:
    """A deployed model whose last check failed, since when and why."""

    submission_id: str
    failed_since: datetime
    detail: str


def health_url(endpoint_url: str) -> str:
    """vLLM's `/health` for an OpenAI base URL (`…/v1`)."""
    return endpoint_url.rstrip("/").removesuffix("/v1") + "/health"


def probe(endpoint_url: str, http: httpx.Client, timeout_s: float) -> ProbeResult:
    """GET the server's `/health`: ok on HTTP 200, else the cause (refused, timed out, HTTP status)."""
    try:
        response = http.get(health_url(endpoint_url), timeout=timeout_s)
    except httpx.TimeoutException:
        return ProbeResult(False, f"health check timed out after {timeout_s:g} s")
    except httpx.HTTPError as error:
        return ProbeResult(False, f"unreachable: {error}"[:DETAIL_MAX_CHARS])
    if response.status_code != 200:
        return ProbeResult(False, f"health check answered HTTP {response.status_code}")
    return ProbeResult(True)


def record_probe(
    session: Session, submission_id: str, endpoint_url: str, result: ProbeResult, at: datetime | None = None
) -> bool:
    """Store a check of `endpoint_url`; ignored (False) unless the model is still deployed there.

    The guard matters: a check that started before a heal or a redeploy must not label the new server.
    """
    at = at or utcnow()
    values: dict[str, object] = {"health_ok": result.ok, "health_checked_at": at}
    if result.ok:
        values |= {"health_failed_since": None, "health_detail": None}
    else:
        values["health_detail"] = result.detail[:DETAIL_MAX_CHARS]
    changed = session.execute(
        update(Submission)
        .where(
            Submission.id == submission_id,
            Submission.status == Status.DEPLOYED,
            Submission.endpoint_url == endpoint_url,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed and not result.ok:
        # The first failure of a streak starts the clock the self-heal sensor reads.
        session.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.health_failed_since.is_(None))
            .values(health_failed_since=at)
            .execution_options(synchronize_session=False)
        )
    return bool(changed)


def reset_health(submission: Submission) -> None:
    """Forget the checks of a server being replaced: its successor starts as never checked."""
    submission.health_ok = None
    submission.health_checked_at = None
    submission.health_failed_since = None
    submission.health_detail = None


def routable_health() -> ColumnElement[bool]:
    """Routing's health condition: the last check passed, or there was none yet."""
    return or_(Submission.health_ok.is_(None), Submission.health_ok.is_(True))


def watched_models(session: Session) -> list[WatchedModel]:
    """Every deployed model with an endpoint: what the watcher checks."""
    rows = session.execute(
        select(Submission.id, Submission.endpoint_url).where(
            Submission.status == Status.DEPLOYED, Submission.endpoint_url.is_not(None)
        )
    )
    return [WatchedModel(submission_id, endpoint) for submission_id, endpoint in rows]


def failing_models(session: Session, failing_for_s: float, now: datetime | None = None) -> list[FailingModel]:
    """Deployed models whose checks have failed for at least `failing_for_s` seconds, longest first."""
    since = (now or utcnow()) - timedelta(seconds=failing_for_s)
    rows = session.execute(
        select(Submission.id, Submission.health_failed_since, Submission.health_detail)
        .where(
            Submission.status == Status.DEPLOYED,
            Submission.health_ok.is_(False),
            Submission.health_failed_since <= since,
        )
        .order_by(Submission.health_failed_since)
    )
    return [FailingModel(submission_id, failed, detail or "") for submission_id, failed, detail in rows]
