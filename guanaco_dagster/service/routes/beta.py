"""Beta-mode routes for the app's bot-response service: route, chat, regenerate, collect feedback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from guanaco_dagster.beta.conversations import (
    leave_feedback,
    regenerate_reply,
    send_message,
    start_conversation,
)
from guanaco_dagster.feedback.categories import categories_on_arrival
from guanaco_dagster.service.dependencies import SessionDep, beta_service, get_settings, get_store
from guanaco_dagster.service.run_launches import FeedbackLaunchesDep, storing_feedback
from guanaco_dagster.service.schemas import (
    BetaConversationRequest,
    BetaConversationResponse,
    BetaFeedbackRequest,
    BetaFeedbackResponse,
    BetaMessageRequest,
    BetaMessageResponse,
)
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.database import Store
from guanaco_dagster.submissions.submissions import get_submission

router = APIRouter(prefix="/beta", tags=["beta"], dependencies=[Depends(beta_service)])


@router.post("/conversations", response_model=BetaConversationResponse, summary="Start a routed conversation")
def new_conversation(
    request: BetaConversationRequest,
    session: SessionDep,
    settings: Annotated[Settings, Depends(get_settings)],
) -> BetaConversationResponse:
    """Assign a model that needs feedback (newest first, weighted by feedback still lacking)."""
    conversation = start_conversation(
        session, feedback_target=settings.feedback_target, **request.model_dump()
    )
    submission = get_submission(session, conversation.submission_id)
    return BetaConversationResponse(
        conversation_id=conversation.id, submission_id=submission.id, model_name=submission.model_name
    )


@router.post("/conversations/{conversation_id}/messages", response_model=BetaMessageResponse)
def post_message(
    conversation_id: str,
    request: BetaMessageRequest,
    store: Annotated[Store, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> BetaMessageResponse:
    """The model's reply to the user's message, stored; the user's message is stored even when it fails.

    A model that fails the conversation's first reply is replaced by another deployed model; a model that
    fails later gets 503 telling the app to start a new conversation.
    """
    reply = send_message(store, conversation_id, request.message, feedback_target=settings.feedback_target)
    return BetaMessageResponse(conversation_id=conversation_id, reply=reply.text, latency_s=reply.latency_s)


@router.post("/conversations/{conversation_id}/regenerate", response_model=BetaMessageResponse)
def regenerate(conversation_id: str, store: Annotated[Store, Depends(get_store)]) -> BetaMessageResponse:
    """A new reply to the user's last message from the same model; the replaced reply is kept, marked
    regenerated (a sign the user did not like it)."""
    reply = regenerate_reply(store, conversation_id)
    return BetaMessageResponse(conversation_id=conversation_id, reply=reply.text, latency_s=reply.latency_s)


@router.post("/conversations/{conversation_id}/feedback", response_model=BetaFeedbackResponse)
def post_feedback(
    conversation_id: str,
    request: BetaFeedbackRequest,
    session: SessionDep,
    launches: FeedbackLaunchesDep,
    settings: Annotated[Settings, Depends(get_settings)],
) -> BetaFeedbackResponse:
    """Thumbs up/down and text at the end of a conversation; retries with the same key are stored once."""
    # Categorised here, where the embedding model stays loaded, so no summary run has to load it.
    categories = categories_on_arrival(request.text, settings.feedback_category_method)
    # Its summary is launched at once when nothing else would summarise it soon (run_launches.py).
    with storing_feedback(launches, session, conversation_id):
        feedback, created = leave_feedback(
            session, conversation_id, **request.model_dump(), categories=categories
        )
        session.commit()
    return BetaFeedbackResponse(
        feedback_id=feedback.id, conversation_id=feedback.conversation_id, stored=created
    )
