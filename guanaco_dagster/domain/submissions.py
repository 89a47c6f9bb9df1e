"""Submissions: creating them, moving them through the lifecycle, and timing their stages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from guanaco_dagster.domain.formatter import GenerationParams, PromptFormatter
from guanaco_dagster.domain.lifecycle import IN_PROGRESS, TERMINAL, Status, check_transition
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Developer, StageTiming, Submission, SubmissionEvent, utcnow

# Hugging Face repo ids: "org/name" with letters, digits, '-', '_', '.'; no '..' or leading/trailing dots.
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class SubmissionRequest(BaseModel):
    """What a developer submits (the shape of Chai's `POST /models/submit`)."""

    model_config = ConfigDict(extra="forbid")

    model_repo: str = Field(description="Hugging Face repo id, e.g. 'org/model'.")
    hf_revision: str = Field(default="main", min_length=1, max_length=200)
    generation_params: GenerationParams = Field(default_factory=GenerationParams)
    formatter: PromptFormatter = Field(default_factory=PromptFormatter)
    model_name: str | None = Field(default=None, max_length=200)
    # Chai's client may send its reward-model fields; there is no reward stage here, so they are ignored.
    reward_repo: str | None = Field(default=None, max_length=200, description="Accepted and ignored.")
    reward_formatter: dict | None = Field(default=None, description="Accepted and ignored.")

    @field_validator("model_repo")
    @classmethod
    def _repo_id_is_valid(cls, value: str) -> str:
        if not _REPO_ID.match(value) or ".." in value or value.endswith("."):
            raise ValueError(f"'{value}' is not a Hugging Face repo id of the form 'org/model'")
        return value


class SubmissionNotFound(LookupError):
    """No submission has this id."""


def _slug(model_repo: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", model_repo.lower()).strip("-")[:100]


def create_submission(session: Session, developer: Developer, request: SubmissionRequest) -> Submission:
    """Record a new `pending` submission with a Chai-style id (`org-model_vN`) and return it."""
    slug = _slug(request.model_repo)
    if session.get_bind().dialect.name == "postgresql":
        # Serialise id allocation per repository until this transaction ends; SQLite serialises writes anyway.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:slug))"), {"slug": slug})
    for _attempt in range(10):
        version = 1 + (
            session.scalar(
                select(func.count()).select_from(Submission).where(Submission.id.like(f"{slug}_v%"))
            )
            or 0
        )
        submission = Submission(
            id=f"{slug}_v{version}",
            developer_id=developer.id,
            model_repo=request.model_repo,
            requested_revision=request.hf_revision,
            model_name=request.model_name or f"{slug}_v{version}",
            generation_params=request.generation_params.model_dump(),
            formatter=request.formatter.model_dump(),
            status=Status.PENDING,
        )
        try:
            with session.begin_nested():  # a concurrent submit of the same repo may take this id first
                session.add(submission)
                session.flush()
        except IntegrityError:
            continue
        session.add(SubmissionEvent(submission_id=submission.id, status=Status.PENDING, message="submitted"))
        return submission
    raise RuntimeError(f"could not allocate a submission id for {request.model_repo}; try again")


def get_submission(session: Session, submission_id: str, *, for_update: bool = False) -> Submission:
    """The submission with this id; raises SubmissionNotFound."""
    query = select(Submission).where(Submission.id == submission_id)
    if for_update:
        query = query.with_for_update()
    submission = session.scalar(query)
    if submission is None:
        raise SubmissionNotFound(f"no submission '{submission_id}'")
    return submission


def transition(session: Session, submission_id: str, target: Status, message: str = "") -> Submission:
    """Move a submission to `target` (checked against the lifecycle) and log the event."""
    submission = get_submission(session, submission_id, for_update=True)
    check_transition(Status(submission.status), target)
    submission.status = target
    if target == Status.PENDING:
        submission.failure_reason = None
    session.add(SubmissionEvent(submission_id=submission_id, status=target, message=message))
    return submission


def mark_failed(session: Session, submission_id: str, reason: str) -> bool:
    """Fail a submission with an actionable reason; a no-op (False) if it already ended."""
    submission = get_submission(session, submission_id, for_update=True)
    if Status(submission.status) in TERMINAL:
        return False
    submission.status = Status.FAILED
    submission.failure_reason = reason
    session.add(SubmissionEvent(submission_id=submission_id, status=Status.FAILED, message=reason))
    return True


def start_stage(session: Session, submission_id: str, stage: Status) -> None:
    """Enter a pipeline stage: status and start time (restarting the clock if the stage is re-run)."""
    transition(session, submission_id, stage, message=f"{stage} started")
    timing = session.scalar(
        select(StageTiming).where(StageTiming.submission_id == submission_id, StageTiming.stage == stage)
    )
    if timing is None:
        session.add(StageTiming(submission_id=submission_id, stage=stage))
    else:
        timing.started_at, timing.finished_at, timing.succeeded = utcnow(), None, None


def finish_stage(session: Session, submission_id: str, stage: Status, succeeded: bool) -> None:
    """Stamp the end of a pipeline stage."""
    timing = session.scalar(
        select(StageTiming).where(StageTiming.submission_id == submission_id, StageTiming.stage == stage)
    )
    if timing is not None:
        timing.finished_at, timing.succeeded = utcnow(), succeeded


@contextmanager
def run_stage(store: Store, submission_id: str, stage: Status) -> Iterator[None]:
    """Run one stage: status + timing in the store; any error fails the submission with its message."""
    with store.session() as session:
        start_stage(session, submission_id, stage)
    try:
        yield
    except BaseException as error:
        with store.session() as session:
            finish_stage(session, submission_id, stage, succeeded=False)
            mark_failed(session, submission_id, stage_failure_reason(stage, error))
        raise
    with store.session() as session:
        finish_stage(session, submission_id, stage, succeeded=True)


def stage_failure_reason(stage: Status, error: BaseException) -> str:
    """The reason a developer sees when `stage` failed with `error`."""
    return f"{stage}: {describe_error(error)}"


def describe_error(error: BaseException) -> str:
    """A one-paragraph, user-facing description of an error."""
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 2000 else text[:2000] + " …"


@dataclass(frozen=True)
class PendingSubmission:
    """A submission waiting for the pipeline; `attempt` counts its trips through `pending` (redeploys)."""

    seq: int
    id: str
    attempt: int

    @property
    def run_key(self) -> str:
        return self.id if self.attempt <= 1 else f"{self.id}#{self.attempt}"


def pending_submissions(session: Session, limit: int = 200) -> list[PendingSubmission]:
    """Submissions waiting for the pipeline, oldest first."""
    attempts = (
        select(func.count())
        .where(SubmissionEvent.submission_id == Submission.id, SubmissionEvent.status == Status.PENDING)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Submission.seq, Submission.id, attempts)
        .where(Submission.status == Status.PENDING)
        .order_by(Submission.seq)
        .limit(limit)
    )
    return [PendingSubmission(seq, sid, int(attempt)) for seq, sid, attempt in rows]


def stale_submissions(session: Session, older_than: datetime) -> list[str]:
    """In-progress submissions not updated since `older_than` (for a reconciler)."""
    rows = session.scalars(
        select(Submission.id).where(
            Submission.status.in_(list(IN_PROGRESS)), Submission.updated_at < older_than
        )
    )
    return list(rows)


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
