"""Beta conversations: start one on a routed model, chat through the model's endpoint, leave feedback."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from guanaco_dagster.domain.formatter import ChatTurn, GenerationParams, PromptFormatter, format_prompt
from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.domain.model_client import ModelClient
from guanaco_dagster.domain.routing import choose_model
from guanaco_dagster.domain.submissions import get_submission
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Conversation, Feedback, Message, Submission


class ConversationError(RuntimeError):
    """The conversation cannot take this action (e.g. feedback twice, model not serving)."""


class ConversationNotFound(ConversationError, LookupError):
    """No conversation has this id."""


@dataclass(frozen=True)
class BotReply:
    conversation_id: str
    model_input: str
    text: str
    latency_s: float


def start_conversation(
    session: Session,
    *,
    user_id: str,
    bot_id: str = "",
    bot_name: str = "Bot",
    user_name: str = "User",
    memory: str = "",
    prompt: str = "",
    feedback_target: int = 100,
    submission_id: str | None = None,
    rng: random.Random | None = None,
) -> Conversation:
    """Open a conversation on the routed model (or on `submission_id` when given, e.g. a developer test)."""
    chosen = submission_id or choose_model(session, feedback_target, rng)
    conversation = Conversation(
        id=uuid.uuid4().hex,
        submission_id=chosen,
        user_id=user_id,
        bot_id=bot_id,
        bot_name=bot_name,
        user_name=user_name,
        memory=memory,
        prompt=prompt,
    )
    session.add(conversation)
    session.flush()
    return conversation


def _conversation(session: Session, conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise ConversationNotFound(f"no conversation '{conversation_id}'")
    return conversation


def storable_text(text: str) -> str:
    """Text safe for every store: PostgreSQL refuses NUL characters, which models and users can emit."""
    return text.replace("\x00", "")


@dataclass(frozen=True)
class ModelTarget:
    """Everything needed to prompt one deployed submission, detached from any database session."""

    submission_id: str
    endpoint_url: str
    served_model_name: str
    formatter: PromptFormatter
    params: GenerationParams


def model_target(submission: Submission) -> ModelTarget:
    """The serving details of a deployed submission; ConversationError when it is not serving."""
    if submission.status != Status.DEPLOYED or not submission.endpoint_url:
        raise ConversationError(f"model {submission.id} is not serving (status {submission.status})")
    return ModelTarget(
        submission_id=submission.id,
        endpoint_url=submission.endpoint_url,
        served_model_name=submission.served_model_name or submission.id,
        formatter=PromptFormatter(**submission.formatter),
        params=GenerationParams(**submission.generation_params),
    )


def generate_reply(
    target: ModelTarget, *, memory: str, prompt: str, bot_name: str, user_name: str, history: list[ChatTurn]
) -> BotReply:
    """Format the conversation with the submission's formatter and ask its model for the next bot turn."""
    with ModelClient(target.endpoint_url, target.served_model_name) as client:
        model_input = format_prompt(
            target.formatter,
            memory=memory,
            prompt=prompt,
            bot_name=bot_name,
            user_name=user_name,
            history=history,
            count_tokens=client.count_tokens,
            max_input_tokens=target.params.max_input_tokens,
        )
        completion = client.complete(model_input, **target.params.to_completion_kwargs())
    return BotReply("", model_input, storable_text(completion.text).strip(), completion.latency_s)


def send_message(store: Store, conversation_id: str, text: str) -> BotReply:
    """Send the user's message to the conversation's model and store both sides of the exchange."""
    with store.session() as session:
        conversation = _conversation(session, conversation_id)
        target = model_target(get_submission(session, conversation.submission_id))
        history = [
            ChatTurn(sender=m.sender, message=m.content) for m in conversation.messages if not m.deleted
        ]
        names = {"bot_name": conversation.bot_name, "user_name": conversation.user_name}
        memory, prompt = conversation.memory, conversation.prompt
    text = storable_text(text)
    history.append(ChatTurn(sender="user", message=text))
    # The model call happens outside any transaction: a slow model must not hold database locks.
    reply = generate_reply(target, memory=memory, prompt=prompt, history=history, **names)
    with store.session() as session:
        session.add(Message(conversation_id=conversation_id, sender="user", content=text))
        session.add(
            Message(
                conversation_id=conversation_id, sender="bot", content=reply.text, latency_s=reply.latency_s
            )
        )
    return BotReply(conversation_id, reply.model_input, reply.text, reply.latency_s)


def leave_feedback(
    session: Session,
    conversation_id: str,
    *,
    thumbs_up: bool,
    text: str = "",
    idempotency_key: str | None = None,
) -> tuple[Feedback, bool]:
    """Store the user's verdict on a conversation; returns (feedback, created).

    A retried post with the same idempotency key returns the stored feedback (created=False), even when
    the retries race each other.
    """
    if idempotency_key:
        existing = _feedback_with_key(session, idempotency_key)
        if existing is not None:
            return existing, False
    conversation = _conversation(session, conversation_id)
    if conversation.feedback is not None:
        # The twin of a retried post may have committed since the key was checked: acknowledge, not refuse.
        if idempotency_key and conversation.feedback.idempotency_key == idempotency_key:
            return conversation.feedback, False
        raise ConversationError(f"conversation '{conversation_id}' already has feedback")
    feedback = Feedback(
        conversation_id=conversation_id,
        submission_id=conversation.submission_id,
        thumbs_up=thumbs_up,
        text=storable_text(text),
        idempotency_key=idempotency_key,
    )
    try:
        with session.begin_nested():
            session.add(feedback)
            session.flush()
    except IntegrityError as error:
        existing = _feedback_with_key(session, idempotency_key) if idempotency_key else None
        if existing is not None:
            return existing, False
        raise ConversationError(f"conversation '{conversation_id}' already has feedback") from error
    return feedback, True


def _feedback_with_key(session: Session, idempotency_key: str) -> Feedback | None:
    return session.scalar(select(Feedback).where(Feedback.idempotency_key == idempotency_key))
