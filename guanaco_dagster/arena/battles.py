"""Battles: two anonymous deployed models answer the same user side by side; the user votes A, B, tie or
both bad, and only then learns which models they were.

Each side is an ordinary beta conversation (`guanaco_dagster.beta.conversations`): the same routing
failover, the same storage, the same regenerate; a battle only ties two of them together.
"""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session

from guanaco_dagster.arena.pairing import DEFAULT_BOOST, choose_pair
from guanaco_dagster.arena.votes import record_vote, votes_counted_at_write_time
from guanaco_dagster.beta.beta_metrics import NO_MODEL, ROUTED
from guanaco_dagster.beta.conversations import (
    BotReply,
    ConversationError,
    ConversationInterrupted,
    ConversationNotFound,
    regenerate_reply,
    send_message,
    start_conversation,
)
from guanaco_dagster.beta.routing import NoModelAvailable, deployed_candidates
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Battle, Conversation
from guanaco_dagster.submissions.submissions import get_submission

SIDES = ("a", "b")


class BattleNotFound(ConversationNotFound):
    """No battle has this id."""


class BattleInterrupted(ConversationInterrupted):
    """One side's model stopped answering after it had replied: the app should start a new battle."""


@dataclass(frozen=True)
class BattleReplies:
    """Both sides' replies to one user message."""

    a: BotReply
    b: BotReply


@dataclass(frozen=True)
class RevealedModel:
    submission_id: str
    model_name: str


@dataclass(frozen=True)
class VoteOutcome:
    """The stored vote and, now that it is cast, who was who."""

    model_a: RevealedModel
    model_b: RevealedModel
    winner: str
    counted: bool
    excluded_reason: str | None
    created: bool


def start_battle(
    session: Session,
    *,
    user_id: str,
    user_name: str = "User",
    bot_name: str = "Bot",
    memory: str = "",
    prompt: str = "",
    rng: random.Random | None = None,
    routing_policy: str = "active",
    new_model_boost: float = DEFAULT_BOOST,
) -> Battle:
    """Open a battle: two distinct deployed models chosen by the routing policy, one conversation each."""
    # Pairing needs only where votes are scarce, not the anomaly filter (a fit per voter): write-time votes.
    votes = votes_counted_at_write_time(session)
    try:
        first, second = choose_pair(
            deployed_candidates(session),
            votes,
            rng or random.Random(),
            # `newest` orders single conversations; a battle has no newest pair, so it pairs uniformly.
            policy="uniform" if routing_policy == "newest" else routing_policy,
            new_model_boost=new_model_boost,
        )
    except NoModelAvailable:
        NO_MODEL.inc()
        raise
    conversation_a, conversation_b = (
        start_conversation(
            session,
            user_id=user_id,
            user_name=user_name,
            bot_name=bot_name,
            memory=memory,
            prompt=prompt,
            submission_id=submission_id,
        )
        for submission_id in (first, second)
    )
    battle = Battle(
        id=uuid.uuid4().hex,
        user_id=user_id,
        conversation_a_id=conversation_a.id,
        conversation_b_id=conversation_b.id,
    )
    session.add(battle)
    session.flush()
    for submission_id in (first, second):
        ROUTED.labels(submission_id=submission_id).inc()
    return battle


def _battle(session: Session, battle_id: str) -> Battle:
    battle = session.get(Battle, battle_id)
    if battle is None:
        raise BattleNotFound(f"no battle '{battle_id}'")
    return battle


def _sides(session: Session, battle_id: str) -> dict[str, Conversation]:
    battle = _battle(session, battle_id)
    ids = {"a": battle.conversation_a_id, "b": battle.conversation_b_id}
    return {side: session.get_one(Conversation, conversation_id) for side, conversation_id in ids.items()}


def send_battle_message(
    store: Store, battle_id: str, text: str, *, feedback_target: int = 100
) -> BattleReplies:
    """Send the user's message to both sides at once and return both replies.

    A side whose model fails its first reply moves to another deployed model (never the other side's), as a
    single conversation does; a side that fails later raises BattleInterrupted: start a new battle.
    """
    with store.session() as session:
        sides = {side: (c.id, c.submission_id) for side, c in _sides(session, battle_id).items()}
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="battle") as pool:
        futures = {
            side: pool.submit(
                send_message,
                store,
                conversation_id,
                text,
                feedback_target=feedback_target,
                exclude=[sid for other, (_, sid) in sides.items() if other != side],
            )
            for side, (conversation_id, _) in sides.items()
        }
    for side, future in futures.items():
        error = future.exception()
        if isinstance(error, ConversationInterrupted):
            raise BattleInterrupted(
                f"side {side.upper()}'s model stopped answering; start a new battle (POST /beta/battles): "
                "the user's message was saved"
            ) from error
        if error is not None:
            raise error
    return BattleReplies(a=futures["a"].result(), b=futures["b"].result())


def regenerate_battle_reply(store: Store, battle_id: str, side: str) -> BotReply:
    """A new reply from one side's model to the user's last message; the old one is kept, marked
    regenerated."""
    if side not in SIDES:
        raise ConversationError(f"side '{side}' is not one of {', '.join(SIDES)}")
    with store.session() as session:
        conversation_id = _sides(session, battle_id)[side].id
    try:
        return regenerate_reply(store, conversation_id)
    except ConversationInterrupted as error:
        raise BattleInterrupted(
            f"side {side.upper()}'s model stopped answering; start a new battle (POST /beta/battles): "
            "the previous reply was kept"
        ) from error


def vote_on_battle(session: Session, battle_id: str, winner: str) -> VoteOutcome:
    """Store the user's verdict once (a retry with the same verdict is acknowledged); reveal the models."""
    battle = _battle(session, battle_id)
    sides = _sides(session, battle_id)
    if battle.vote is None and not all(_has_reply(c) for c in sides.values()):
        raise ConversationError(
            f"battle '{battle_id}' cannot be voted on yet: both sides must have replied "
            "(send a message first)"
        )
    vote, created = record_vote(session, battle, sides["a"].submission_id, sides["b"].submission_id, winner)
    return VoteOutcome(
        model_a=_revealed(session, vote.submission_a_id),
        model_b=_revealed(session, vote.submission_b_id),
        winner=vote.winner,
        counted=vote.counted,
        excluded_reason=vote.excluded_reason,
        created=created,
    )


def _has_reply(conversation: Conversation) -> bool:
    return any(m.sender == "bot" and not m.deleted for m in conversation.messages)


def _revealed(session: Session, submission_id: str) -> RevealedModel:
    submission = get_submission(session, submission_id)
    return RevealedModel(submission_id=submission.id, model_name=submission.model_name)
