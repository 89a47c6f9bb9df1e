"""Beta conversations: start one on a routed model, chat through the model's endpoint, regenerate a reply,
leave feedback. Battles (`guanaco_dagster.arena.battles`) run two of these side by side."""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from guanaco_dagster.beta.beta_metrics import FAILOVERS, count_feedback
from guanaco_dagster.beta.health import ProbeResult, record_probe
from guanaco_dagster.beta.model_client import ModelClient, ModelUnavailable
from guanaco_dagster.beta.model_template_chat import chat_sampling, fit_model_chat
from guanaco_dagster.beta.routing import NoModelAvailable, choose_model
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Conversation, Feedback, Message, Submission
from guanaco_dagster.submissions.chat_format import uses_model_chat_template
from guanaco_dagster.submissions.formatter import ChatTurn, GenerationParams, PromptFormatter, format_prompt
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import get_submission


class ConversationError(RuntimeError):
    """The conversation cannot take this action (e.g. feedback twice, model not serving)."""


class ConversationNotFound(ConversationError, LookupError):
    """No conversation has this id."""


class ConversationInterrupted(ConversationError):
    """The conversation's model stopped answering after it had replied: the app should start a new one."""


# Other models a new conversation is moved to, one after the other, when its model fails its first call.
MAX_FAILOVERS = 2


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
    model_chat_template: bool = False  # `auto`: chat through the model's own template, not the formatter


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
        model_chat_template=uses_model_chat_template(submission.chat_format),
    )


def generate_reply(
    target: ModelTarget, *, memory: str, prompt: str, bot_name: str, user_name: str, history: list[ChatTurn]
) -> BotReply:
    """Ask the submission's model for the next bot turn: through its own chat template (`auto`), or with the
    conversation formatted by the submission's formatter."""
    with ModelClient(target.endpoint_url, target.served_model_name) as client:
        if target.model_chat_template:
            chat = fit_model_chat(
                client,
                memory=memory,
                prompt=prompt,
                bot_name=bot_name,
                user_name=user_name,
                history=history,
                max_input_tokens=target.params.max_input_tokens,
            )
            completion = client.chat(chat.messages, **chat_sampling(target.params))
            model_input = client.detokenize(chat.prompt_tokens)
            return BotReply("", model_input, storable_text(completion.text).strip(), completion.latency_s)
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


@dataclass
class _Exchange:
    """What the next bot turn of a conversation is generated from, read in one short transaction."""

    submission_id: str
    memory: str
    prompt: str
    bot_name: str
    user_name: str
    history: list[ChatTurn]

    def reply_from(self, store: Store) -> BotReply:
        return _reply_from(
            store,
            self.submission_id,
            memory=self.memory,
            prompt=self.prompt,
            bot_name=self.bot_name,
            user_name=self.user_name,
            history=self.history,
        )


def _live_messages(conversation: Conversation) -> list[Message]:
    """The messages the model sees: neither deleted by the user nor replaced by a regenerated reply."""
    return [m for m in conversation.messages if not m.deleted and not m.regenerated]


def _exchange(conversation: Conversation, messages: list[Message]) -> _Exchange:
    return _Exchange(
        submission_id=conversation.submission_id,
        memory=conversation.memory,
        prompt=conversation.prompt,
        bot_name=conversation.bot_name,
        user_name=conversation.user_name,
        history=[ChatTurn(sender=m.sender, message=m.content) for m in messages],
    )


def send_message(
    store: Store,
    conversation_id: str,
    text: str,
    *,
    feedback_target: int = 100,
    exclude: Collection[str] = (),
) -> BotReply:
    """Send the user's message to the conversation's model and store both sides of the exchange.

    The user's message is stored first, so nothing they wrote is lost. If the model fails the first call of
    the conversation, the conversation moves to another deployed model (never one of `exclude`; the failed
    one leaves routing at once); a failure later on raises ConversationInterrupted: the app should start a
    new conversation.
    """
    text = storable_text(text)
    with store.session() as session:
        conversation = _conversation(session, conversation_id)
        exchange = _exchange(conversation, _live_messages(conversation))
        session.add(Message(conversation_id=conversation_id, sender="user", content=text))
    first_call = not any(turn.sender == "bot" for turn in exchange.history)
    exchange.history.append(ChatTurn(sender="user", message=text))
    tried: list[str] = []
    while True:
        try:
            # The model call happens outside any transaction: a slow model must not hold database locks.
            reply = exchange.reply_from(store)
            break
        except (ModelUnavailable, ConversationError) as error:
            if isinstance(error, ModelUnavailable) and not error.server_failed:
                raise  # the server refused this request (e.g. too long): another model would not help
            if not first_call:
                raise ConversationInterrupted(
                    f"this conversation's model stopped answering ({error}); start a new conversation "
                    "(POST /beta/conversations): the user's message was saved"
                ) from error
            tried.append(exchange.submission_id)
            if len(tried) > MAX_FAILOVERS:
                raise NoModelAvailable(
                    f"{len(tried)} models failed to answer ({error}); try again shortly: "
                    "the user's message was saved"
                ) from error
            exchange.submission_id = _move_conversation(
                store, conversation_id, [*tried, *exclude], feedback_target, error
            )
            FAILOVERS.labels(submission_id=tried[-1]).inc()
    with store.session() as session:
        session.add(
            Message(
                conversation_id=conversation_id, sender="bot", content=reply.text, latency_s=reply.latency_s
            )
        )
    return BotReply(conversation_id, reply.model_input, reply.text, reply.latency_s)


def regenerate_reply(store: Store, conversation_id: str) -> BotReply:
    """A new reply to the user's last message from the same model; the old reply is kept, marked
    `regenerated` (an implicit signal that the user disliked it) and no longer shown to the model."""
    with store.session() as session:
        conversation = _conversation(session, conversation_id)
        messages = _live_messages(conversation)
        if not messages or messages[-1].sender != "bot":
            raise ConversationError(
                f"conversation '{conversation_id}' has no reply to regenerate: "
                "its last message is not the bot's"
            )
        replaced_id = messages[-1].id
        exchange = _exchange(conversation, messages[:-1])
    try:
        reply = exchange.reply_from(store)
    except (ModelUnavailable, ConversationError) as error:
        if isinstance(error, ModelUnavailable) and not error.server_failed:
            raise
        raise ConversationInterrupted(
            f"this conversation's model stopped answering ({error}); start a new conversation "
            "(POST /beta/conversations): the previous reply was kept"
        ) from error
    with store.session() as session:
        replaced = session.get(Message, replaced_id)
        if replaced is not None:
            replaced.regenerated = True
        session.add(
            Message(
                conversation_id=conversation_id, sender="bot", content=reply.text, latency_s=reply.latency_s
            )
        )
    return BotReply(conversation_id, reply.model_input, reply.text, reply.latency_s)


def _reply_from(store: Store, submission_id: str, **conversation: object) -> BotReply:
    """The next bot turn from `submission_id`; a server failure marks it unhealthy before it is raised."""
    with store.session() as session:
        target = model_target(get_submission(session, submission_id))
    try:
        return generate_reply(target, **conversation)  # type: ignore[arg-type]
    except ModelUnavailable as error:
        if error.server_failed:
            with store.session() as session:
                record_probe(session, submission_id, target.endpoint_url, ProbeResult(False, str(error)))
        raise


def _move_conversation(
    store: Store, conversation_id: str, failed: list[str], feedback_target: int, error: Exception
) -> str:
    """Route the conversation to another deployed model than `failed`; NoModelAvailable when none is left."""
    with store.session() as session:
        try:
            chosen = choose_model(session, feedback_target, exclude=failed)
        except NoModelAvailable:
            raise NoModelAvailable(
                f"the conversation's model failed ({error}) and no other model is available right now; "
                "try again shortly: the user's message was saved"
            ) from error
        _conversation(session, conversation_id).submission_id = chosen
    return chosen


def leave_feedback(
    session: Session,
    conversation_id: str,
    *,
    thumbs_up: bool,
    text: str = "",
    idempotency_key: str | None = None,
    categories: list[str] | None = None,
) -> tuple[Feedback, bool]:
    """Store the user's verdict on a conversation; returns (feedback, created). `categories` are the
    text's, when the caller has them (the service assigns them as feedback arrives).

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
        categories=categories,
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
    count_feedback(feedback.submission_id, thumbs_up)
    return feedback, True


def _feedback_with_key(session: Session, idempotency_key: str) -> Feedback | None:
    return session.scalar(select(Feedback).where(Feedback.idempotency_key == idempotency_key))
