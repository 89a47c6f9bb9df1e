"""Submissions: creating them, moving them through the lifecycle, and timing their stages."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from guanaco_dagster.store.models import Developer, StageTiming, Submission, SubmissionEvent, utcnow
from guanaco_dagster.submissions.chat_format import requested_chat_format
from guanaco_dagster.submissions.formatter import PromptFormatter
from guanaco_dagster.submissions.lifecycle import TERMINAL, Status, check_transition
from guanaco_dagster.submissions.request import SubmissionRequest


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
            # With no formatter, Chai's default stands in until intake finds the model's own chat template.
            formatter=(request.formatter or PromptFormatter()).model_dump(),
            chat_format=requested_chat_format(request.formatter is not None),
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


def stage_failure_reason(stage: Status, error: BaseException, submission_id: str = "ID") -> str:
    """The reason a developer sees when `stage` failed with `error`: the cause first, then what to do."""
    # A deployer's error carries a short cause; its full message (log tail, host paths) is for operators.
    cause = getattr(error, "cause", "")
    if isinstance(cause, str) and cause:
        return (
            f"{stage}: {cause}. Fix the model or its config and resubmit; "
            f"`guanaco logs {submission_id} --server` shows the server's log."
        )
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
