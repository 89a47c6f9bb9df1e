"""Beta-mode battles: two anonymous models side by side, the user's vote, then the reveal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from guanaco_dagster.arena.battles import (
    regenerate_battle_reply,
    send_battle_message,
    start_battle,
    vote_on_battle,
)
from guanaco_dagster.service.dependencies import SessionDep, beta_service, get_settings, get_store
from guanaco_dagster.service.schemas import (
    BattleMessageResponse,
    BattleRegenerateRequest,
    BattleRegenerateResponse,
    BattleRequest,
    BattleResponse,
    BattleVoteRequest,
    BattleVoteResponse,
    BetaMessageRequest,
    RevealedModel,
)
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.database import Store

router = APIRouter(prefix="/beta/battles", tags=["beta"], dependencies=[Depends(beta_service)])
StoreDep = Annotated[Store, Depends(get_store)]


@router.post("", response_model=BattleResponse, summary="Start a battle between two anonymous models")
def new_battle(
    request: BattleRequest, session: SessionDep, settings: Annotated[Settings, Depends(get_settings)]
) -> BattleResponse:
    """Two distinct deployed models chosen by the pairing policy, one conversation each; the models stay
    anonymous until the vote."""
    battle = start_battle(
        session,
        **request.model_dump(),
        routing_policy=settings.routing_policy,
        new_model_boost=settings.new_model_boost,
    )
    return BattleResponse(
        battle_id=battle.id,
        conversation_a_id=battle.conversation_a_id,
        conversation_b_id=battle.conversation_b_id,
    )


@router.post("/{battle_id}/messages", response_model=BattleMessageResponse)
def post_battle_message(
    battle_id: str,
    request: BetaMessageRequest,
    store: StoreDep,
    settings: Annotated[Settings, Depends(get_settings)],
) -> BattleMessageResponse:
    """Both models' replies to the user's message, asked at the same time.

    A side whose model fails its first reply is moved to another model; a side that fails later gets 503
    telling the app to start a new battle.
    """
    replies = send_battle_message(store, battle_id, request.message, feedback_target=settings.feedback_target)
    return BattleMessageResponse(
        battle_id=battle_id,
        reply_a=replies.a.text,
        reply_b=replies.b.text,
        latency_a_s=replies.a.latency_s,
        latency_b_s=replies.b.latency_s,
    )


@router.post("/{battle_id}/regenerate", response_model=BattleRegenerateResponse)
def regenerate(battle_id: str, request: BattleRegenerateRequest, store: StoreDep) -> BattleRegenerateResponse:
    """A new reply from one side to the user's last message; the replaced reply is kept as a signal."""
    reply = regenerate_battle_reply(store, battle_id, request.side)
    return BattleRegenerateResponse(
        battle_id=battle_id, side=request.side, reply=reply.text, latency_s=reply.latency_s
    )


@router.post("/{battle_id}/vote", response_model=BattleVoteResponse)
def vote(battle_id: str, request: BattleVoteRequest, session: SessionDep) -> BattleVoteResponse:
    """The user's verdict, stored once (a retry with the same verdict is acknowledged, a different one is a
    conflict); the answer reveals both models and whether the vote counts."""
    outcome = vote_on_battle(session, battle_id, request.winner)
    return BattleVoteResponse(
        battle_id=battle_id,
        winner=outcome.winner,  # type: ignore[arg-type]
        model_a=RevealedModel(**vars(outcome.model_a)),
        model_b=RevealedModel(**vars(outcome.model_b)),
        counted=outcome.counted,
        excluded_reason=outcome.excluded_reason,
        stored=outcome.created,
    )
