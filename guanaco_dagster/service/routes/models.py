"""Developer routes for submissions: submit, list, inspect, chat, deactivate / teardown / redeploy."""

from __future__ import annotations

from fastapi import APIRouter

from guanaco_dagster.beta.conversations import generate_reply, model_target
from guanaco_dagster.beta.server_metrics import server_metrics_url
from guanaco_dagster.service.dependencies import DeveloperDep, SessionDep
from guanaco_dagster.service.run_launches import DagsterRunsDep, launch_submission_now
from guanaco_dagster.service.schemas import (
    ChatRequest,
    ChatResponse,
    LifecycleResponse,
    LogEntry,
    StageTimingOut,
    SubmissionInfo,
    SubmitRequest,
    SubmitResponse,
)
from guanaco_dagster.store.models import Developer, Submission
from guanaco_dagster.submissions.formatter import ChatTurn
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.lifecycle_requests import Action, request_action
from guanaco_dagster.submissions.submissions import (
    PendingSubmission,
    SubmissionNotFound,
    create_submission,
    get_submission,
)
from guanaco_dagster.submissions.waterfall import time_to_deployed_s

router = APIRouter(prefix="/models", tags=["models"])


def owned_submission(session: SessionDep, developer: Developer, submission_id: str) -> Submission:
    """The caller's submission; another developer's is reported as not found (its existence is private)."""
    submission = get_submission(session, submission_id)
    if submission.developer_id != developer.id:
        raise SubmissionNotFound(f"no submission '{submission_id}'")
    return submission


@router.post("/submit", response_model=SubmitResponse, summary="Submit a model from the Hugging Face Hub")
def submit(
    request: SubmitRequest, session: SessionDep, developer: DeveloperDep, dagster: DagsterRunsDep
) -> SubmitResponse:
    submission = create_submission(session, developer, request)
    # Before the commit, so the submission sensor never sees the row without its run (run_launches.py).
    launch_submission_now(dagster, PendingSubmission(submission.seq, submission.id, attempt=1))
    return SubmitResponse(submission_id=submission.id)


@router.get("/", response_model=dict[str, str], summary="The caller's submissions and their status")
def list_submissions(session: SessionDep, developer: DeveloperDep) -> dict[str, str]:
    submissions = (
        session.query(Submission).filter(Submission.developer_id == developer.id).order_by(Submission.seq)
    )
    return {s.id: s.status for s in submissions}


def submission_info(submission: Submission) -> SubmissionInfo:
    """A submission with its stage timings and log, as `GET /models/{id}` shows it."""
    return SubmissionInfo(
        submission_id=submission.id,
        model_repo=submission.model_repo,
        hf_revision=submission.requested_revision,
        resolved_revision=submission.resolved_revision,
        model_name=submission.model_name,
        status=submission.status,
        failure_reason=submission.failure_reason,
        generation_params=submission.generation_params,
        formatter=submission.formatter,
        chat_format=submission.chat_format,
        timestamp=submission.created_at,
        stages=[
            StageTimingOut(
                stage=t.stage,
                started_at=t.started_at,
                finished_at=t.finished_at,
                duration_s=(t.finished_at - t.started_at).total_seconds() if t.finished_at else None,
                succeeded=t.succeeded,
            )
            for t in submission.stages
        ],
        logs=[
            LogEntry(
                timestamp=e.at,
                level="ERROR" if e.status == Status.FAILED else "INFO",
                entry=f"{e.status}: {e.message}" if e.message else e.status,
            )
            for e in submission.events
        ],
        time_to_deployed_s=time_to_deployed_s(submission),
        developer_uid=submission.developer.name,
        metrics_url=server_metrics_url(submission.endpoint_url)
        if submission.status == Status.DEPLOYED and submission.endpoint_url
        else None,
    )


@router.get("/{submission_id}", response_model=SubmissionInfo, summary="Status, stage timings and logs")
def info(submission_id: str, session: SessionDep, developer: DeveloperDep) -> SubmissionInfo:
    return submission_info(owned_submission(session, developer, submission_id))


def _lifecycle(
    session: SessionDep, developer: Developer, submission_id: str, action: Action
) -> LifecycleResponse:
    submission = owned_submission(session, developer, submission_id)
    request = request_action(session, submission.id, action)
    return LifecycleResponse(
        submission_id=submission.id, action=action, request_id=request.id, status=submission.status
    )


def deactivate(submission_id: str, session: SessionDep, developer: DeveloperDep) -> LifecycleResponse:
    """Take a deployed model out of beta routing and stop its server (it keeps its feedback)."""
    return _lifecycle(session, developer, submission_id, Action.DEACTIVATE)


def teardown(submission_id: str, session: SessionDep, developer: DeveloperDep) -> LifecycleResponse:
    """Stop the model's server for good (status `torndown`)."""
    return _lifecycle(session, developer, submission_id, Action.TEARDOWN)


def redeploy(submission_id: str, session: SessionDep, developer: DeveloperDep) -> LifecycleResponse:
    """Run an inactive, torn-down or failed submission through the pipeline again."""
    return _lifecycle(session, developer, submission_id, Action.REDEPLOY)


# Chai's client uses GET for these actions; POST is offered for clients that prefer the usual verb.
for _route in (deactivate, teardown, redeploy):
    for _method in ("GET", "POST"):
        router.add_api_route(
            f"/{{submission_id}}/{_route.__name__}",
            _route,
            methods=[_method],
            response_model=LifecycleResponse,
            operation_id=f"{_route.__name__}_{_method.lower()}",
        )


def _turn(message_sender: str, user_name: str, message: str) -> ChatTurn:
    sender = "user" if message_sender.lower() in ("user", user_name.lower()) else "bot"
    return ChatTurn(sender=sender, message=message)


@router.post("/{submission_id}/chat", response_model=ChatResponse, summary="Chat with your deployed model")
def chat(
    submission_id: str, request: ChatRequest, session: SessionDep, developer: DeveloperDep
) -> ChatResponse:
    target = model_target(owned_submission(session, developer, submission_id))
    session.commit()  # release the transaction before the (slow) model call
    reply = generate_reply(
        target,
        memory=request.memory,
        prompt=request.prompt,
        bot_name=request.bot_name,
        user_name=request.user_name,
        history=[_turn(m.sender, request.user_name, m.message) for m in request.chat_history],
    )
    return ChatResponse(model_input=reply.model_input, model_output=reply.text)
