"""Deactivate, tear down or redeploy a model: requests recorded by the service, carried out by Dagster."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import LifecycleRequest, utcnow
from guanaco_dagster.submissions.lifecycle import InvalidTransition, Status
from guanaco_dagster.submissions.submissions import get_submission, transition


class Action(StrEnum):
    DEACTIVATE = "deactivate"
    TEARDOWN = "teardown"
    REDEPLOY = "redeploy"


# Which statuses each action applies to, and the status it leads to.
_FROM = {
    Action.DEACTIVATE: {Status.DEPLOYED},
    Action.TEARDOWN: {Status.DEPLOYED, Status.INACTIVE, Status.FAILED},
    Action.REDEPLOY: {Status.INACTIVE, Status.TORNDOWN, Status.FAILED},
}
RESULT = {
    Action.DEACTIVATE: Status.INACTIVE,
    Action.TEARDOWN: Status.TORNDOWN,
    Action.REDEPLOY: Status.PENDING,
}


def request_action(session: Session, submission_id: str, action: Action) -> LifecycleRequest:
    """Record a request (InvalidTransition when the model's status does not allow it, or one is open)."""
    submission = get_submission(session, submission_id, for_update=True)
    if submission.status not in _FROM[action]:
        allowed = ", ".join(sorted(_FROM[action]))
        raise InvalidTransition(
            f"cannot {action} {submission_id}: it is '{submission.status}' (needs {allowed})"
        )
    if open_request_for(session, submission_id) is not None:
        raise InvalidTransition(f"{submission_id} already has a lifecycle request in progress")
    request = LifecycleRequest(submission_id=submission_id, action=action)
    session.add(request)
    session.flush()
    return request


def open_request_for(session: Session, submission_id: str) -> LifecycleRequest | None:
    """The submission's request still being carried out, if any."""
    return session.scalar(
        select(LifecycleRequest).where(
            LifecycleRequest.submission_id == submission_id, LifecycleRequest.completed_at.is_(None)
        )
    )


def open_requests(session: Session) -> list[LifecycleRequest]:
    """Requests not yet carried out, oldest first."""
    return list(
        session.scalars(
            select(LifecycleRequest)
            .where(LifecycleRequest.completed_at.is_(None))
            .order_by(LifecycleRequest.id)
        )
    )


def complete_request(session: Session, request_id: int, outcome: str) -> None:
    """Mark a request done with what happened."""
    request = session.get(LifecycleRequest, request_id)
    if request is not None:
        request.completed_at, request.outcome = utcnow(), outcome


def carry_out_request(store: Store, deployer: Deployer, request_id: int) -> str:
    """Do what a request asks (stop the server, change the status) and record the outcome."""
    with store.session() as session:
        request = session.get(LifecycleRequest, request_id)
        if request is None or request.completed_at is not None:
            return "nothing to do"
        submission_id, action = request.submission_id, Action(request.action)
    if action in (Action.DEACTIVATE, Action.TEARDOWN):
        stopped = deployer.teardown(submission_id)
    with store.session() as session:
        submission = transition(
            session, submission_id, RESULT[action], message=f"{action} requested by developer"
        )
        if action is Action.REDEPLOY:
            submission.endpoint_url = submission.served_model_name = None
            outcome = "queued for a new pipeline run"
        else:
            submission.endpoint_url = None
            outcome = f"server {'stopped' if stopped else 'was not running'}; status {RESULT[action]}"
        complete_request(session, request_id, outcome)
    return outcome
