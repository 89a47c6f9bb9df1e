"""The reconciler: no submission stays in progress after its pipeline run is gone, and no failed model keeps a
server.

A run process killed mid-pipeline (out of memory, a drained node, a restarted daemon) or a run cancelled in
the Dagster UI can leave a submission in `downloading` … `stress_testing` with nothing working on it; run
monitoring and the run-failure sensor catch most of these, this catches the rest. A stale submission (in
progress, not updated for `stale_after_s`, no pipeline run in flight) is resumed from the stage it stopped in,
at most `max_resumes` times per trip through the pipeline, then failed with a reason the developer can act on.

Plain functions: the sensor (`sensors/reconciler_sensor.py`) says which partitions have a run in flight and
turns resume decisions into run requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.stages.staging import StagingLayout
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Submission, SubmissionEvent, utcnow
from guanaco_dagster.submissions.failure import Leftovers, fail_submission
from guanaco_dagster.submissions.lifecycle import IN_PROGRESS, TERMINAL, Status
from guanaco_dagster.submissions.submissions import SubmissionNotFound, get_submission

logger = logging.getLogger(__name__)

# Events the reconciler writes start with this, so it can count its own resumes.
RESUME_MESSAGE = "resumed by the reconciler"
# A stage whose run was interrupted (the platform stopping) says so: the model is not to blame.
INTERRUPTED_MESSAGE = "interrupted: the platform stopped while this stage ran; it resumes after the restart"


RESUMED_AFTER_INTERRUPTION = f"{RESUME_MESSAGE} after the platform restarted"


def was_interrupted(submission: Submission) -> bool:
    """Did the submission's last stage stop because its run was interrupted, not because it failed?"""
    return bool(submission.events) and submission.events[-1].message.startswith(INTERRUPTED_MESSAGE)


class ReconcilerConfig(BaseModel):
    """When a submission counts as stale and how often it is resumed."""

    stale_after_s: float = Field(
        default=300.0,
        gt=0,
        description="An in-progress submission not updated for this long, with no pipeline run in flight, "
        "is stale.",
    )
    max_resumes: int = Field(
        default=1, ge=0, description="Automatic resumes per trip through the pipeline before it is failed."
    )


class ReconcilerSettings(ReconcilerConfig, BaseSettings):
    """`ReconcilerConfig` read from `GUANACO_RECONCILER_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="GUANACO_RECONCILER_", extra="ignore")


class Action(StrEnum):
    RESUME = "resume"
    FAIL = "fail"


@dataclass(frozen=True)
class StaleSubmission:
    """An in-progress submission nobody has touched for a while, and what a resume would need."""

    id: str
    status: Status
    updated_at: datetime
    resumes: int
    total_resumes: int
    interrupted: bool = False
    artifact_sha256: str | None = None
    artifact_uri: str | None = None
    endpoint_url: str | None = None


@dataclass(frozen=True)
class Decision:
    """What the reconciler does with one stale submission; `run_key` is set when it must request a run."""

    submission_id: str
    action: Action
    stage: Status
    reason: str
    run_key: str | None = None
    interrupted: bool = False


@dataclass
class ReconcileResult:
    """What one reconciler pass did."""

    resumed: list[Decision] = field(default_factory=list)
    failed: list[Decision] = field(default_factory=list)
    torn_down: list[str] = field(default_factory=list)
    skipped_running: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a sensor's skip reason or log."""
        return (
            f"{len(self.resumed)} resumed, {len(self.failed)} failed, {len(self.torn_down)} server(s) torn "
            f"down, {len(self.skipped_running)} stale-looking with a run in flight"
        )


def _resume_counts(events: list[SubmissionEvent]) -> tuple[int, int]:
    """(budgeted resumes since the submission last entered the pipeline, resumes ever)."""
    is_resume = [event.message.startswith(RESUME_MESSAGE) for event in events]
    budgeted = [
        resume and not event.message.startswith(RESUMED_AFTER_INTERRUPTION)
        for resume, event in zip(is_resume, events, strict=True)
    ]
    entries = [i for i, event in enumerate(events) if event.status == Status.PENDING and not is_resume[i]]
    since = entries[-1] if entries else -1
    return sum(budgeted[since + 1 :]), sum(is_resume)


def find_stale_submissions(session: Session, older_than: datetime) -> list[StaleSubmission]:
    """In-progress submissions last updated before `older_than`, or interrupted at any time, oldest first."""
    rows = session.scalars(
        select(Submission)
        .where(Submission.status.in_([str(status) for status in IN_PROGRESS]))
        .options(selectinload(Submission.events))
        .order_by(Submission.seq)
    )
    stale = []
    for submission in rows:
        # Compared here rather than in SQL: SQLite keeps timestamps as text, whose order is not reliable.
        interrupted = was_interrupted(submission)
        if submission.updated_at >= older_than and not interrupted:
            continue
        resumes, total = _resume_counts(list(submission.events))
        stale.append(
            StaleSubmission(
                id=submission.id,
                status=Status(submission.status),
                updated_at=submission.updated_at,
                resumes=resumes,
                total_resumes=total,
                interrupted=interrupted,
                artifact_sha256=submission.artifact_sha256,
                artifact_uri=submission.artifact_uri,
                endpoint_url=submission.endpoint_url,
            )
        )
    return stale


def missing_prerequisite(stale: StaleSubmission, staging: StagingLayout | None) -> str:
    """What a resume from the submission's stage would lack ('' when nothing).

    Downloads restart from the Hub and deployments from the S3 cache, but tensorizing and uploading read
    files staged by the run that died: on Kubernetes those were on its pod's disk and are gone.
    """
    if stale.status == Status.TENSORIZING and not (staging and staging.has_download(stale.id)):
        return "the downloaded weights it was tensorizing are gone"
    if stale.status == Status.UPLOADING:
        if not stale.artifact_sha256:
            return "its tensorized artifact was never recorded"
        if not (staging and staging.has_artifact(stale.id)):
            return "the tensorized artifact it was uploading is gone"
    if stale.status == Status.DEPLOYING and not stale.artifact_uri:
        return "its artifact never reached the S3 cache"
    if stale.status == Status.STRESS_TESTING and not stale.endpoint_url:
        return "its server's endpoint was never recorded"
    return ""


def decide(stale: StaleSubmission, max_resumes: int, staging: StagingLayout | None = None) -> Decision:
    """Resume a stale submission from its stage, or fail it once resumes are used up or cannot work."""
    stage = stale.status
    advice = f"resubmit or redeploy (`guanaco redeploy {stale.id}`)"
    # An interruption is the platform's doing, not the model's: it costs no resume from the budget.
    if stale.resumes >= max_resumes and not stale.interrupted:
        tried = f" (resumed {stale.resumes} time(s) already)" if stale.resumes else ""
        reason = f"the pipeline stopped unexpectedly during {stage}{tried}; {advice}"
        return Decision(stale.id, Action.FAIL, stage, reason)
    missing = missing_prerequisite(stale, staging)
    if missing:
        reason = f"the pipeline stopped unexpectedly during {stage} and {missing}; {advice}"
        return Decision(stale.id, Action.FAIL, stage, reason)
    attempt = stale.resumes + 1
    reason = (
        f"the pipeline stopped unexpectedly during {stage}; resuming (attempt {attempt} of {max_resumes})"
    )
    if stale.interrupted:
        reason = f"the platform restarted during {stage}; resuming where it stopped"
    # A pending submission needs no run request of ours: the resume event below is a new trip through
    # `pending`, for which the submission sensor requests a run under a new key.
    run_key = None if stage == Status.PENDING else f"{stale.id}#resume-{stale.total_resumes + 1}"
    return Decision(stale.id, Action.RESUME, stage, reason, run_key, interrupted=stale.interrupted)


def moved_on(submission: Submission, decision: Decision, older_than: datetime) -> bool:
    """Did the submission's run make progress after the reconciler looked?"""
    if submission.status != decision.stage:
        return True
    return not was_interrupted(submission) if decision.interrupted else submission.updated_at >= older_than


def apply_resume(session: Session, decision: Decision, older_than: datetime, now: datetime) -> bool:
    """Record a resume unless the submission moved on meanwhile; True when applied."""
    try:
        submission = get_submission(session, decision.submission_id, for_update=True)
    except SubmissionNotFound:
        return False
    if moved_on(submission, decision, older_than):
        return False
    session.add(
        SubmissionEvent(
            submission_id=decision.submission_id,
            status=decision.stage,
            message=f"{RESUMED_AFTER_INTERRUPTION if decision.interrupted else RESUME_MESSAGE}: "
            f"{decision.reason}",
        )
    )
    # The status does not change, so stamp the row ourselves: the next pass must not see it as stale yet.
    submission.updated_at = now
    return True


def orphaned_servers(session: Session, submission_ids: list[str]) -> list[str]:
    """Of the submissions a deployer has servers for, those that ended (failed, inactive, torn down)."""
    if not submission_ids:
        return []
    ended = [str(status) for status in TERMINAL]
    rows = session.scalars(
        select(Submission.id).where(Submission.id.in_(submission_ids), Submission.status.in_(ended))
    )
    return sorted(rows)


def tear_down_orphaned_servers(store: Store, deployer: Deployer) -> list[str]:
    """Stop the servers of submissions that ended; returns their ids (a failed teardown is retried later)."""
    with store.session() as session:
        orphans = orphaned_servers(session, deployer.list_submission_ids())
    torn_down = []
    for submission_id in orphans:
        try:
            deployer.teardown(submission_id)
        except Exception:  # noqa: BLE001 - one stuck server must not keep the others running
            logger.exception("could not tear down the server of %s", submission_id)
            continue
        torn_down.append(submission_id)
    return torn_down


def reconcile(
    store: Store,
    deployer: Deployer | None,
    settings: ReconcilerConfig,
    *,
    has_run_in_flight: Callable[[str], bool],
    staging: StagingLayout | None = None,
    leftovers: Leftovers | None = None,
    now: datetime | None = None,
) -> ReconcileResult:
    """One pass: resume or fail stale submissions, then stop the servers of submissions that ended.

    `has_run_in_flight(submission_id)` says whether a pipeline run for the partition is queued or running;
    `staging` is the pipeline's staging layout; `leftovers` what failing a submission removes (default:
    its server and staged files).
    """
    if leftovers is None:
        leftovers = Leftovers.of(deployer, staging) if deployer is not None else Leftovers(staging=staging)
    now = now or utcnow()
    older_than = now - timedelta(seconds=settings.stale_after_s)
    result = ReconcileResult()
    with store.session() as session:
        stale = find_stale_submissions(session, older_than)
    for candidate in stale:
        if has_run_in_flight(candidate.id):
            result.skipped_running.append(candidate.id)
            continue
        decision = decide(candidate, settings.max_resumes, staging)
        if decision.action == Action.FAIL:
            try:
                applied = fail_submission(
                    store,
                    decision.submission_id,
                    decision.reason,
                    leftovers,
                    unless=lambda submission, d=decision: moved_on(submission, d, older_than),
                )
            except SubmissionNotFound:
                applied = False
        else:
            with store.session() as session:
                applied = apply_resume(session, decision, older_than, now)
        if applied:
            (result.resumed if decision.action == Action.RESUME else result.failed).append(decision)
    if deployer is not None:
        result.torn_down = tear_down_orphaned_servers(store, deployer)
    return result
