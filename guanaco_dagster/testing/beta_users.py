"""Simulated beta users: scripted app users who chat with routed models and leave feedback."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import httpx

from guanaco_dagster.beta.conversations import leave_feedback, send_message, start_conversation
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Conversation

PERSONAS = (
    (
        "Captain Nova",
        "A cheerful space pirate who loves terrible puns.",
        "You meet the captain on a starship.",
    ),
    ("Professor Quill", "A wise old wizard who teaches with riddles.", "The tower library is quiet tonight."),
    ("Mittens", "A curious cat who can talk, and is suspicious of dogs.", "Mittens sits on the windowsill."),
)
OPENERS = (
    "Hello! How are you today?",
    "Tell me a story, please.",
    "What happened next?",
    "Why do you think so?",
)
# Feedback texts as users write them; some carry PII the developer's report must mask.
FEEDBACK = (
    (True, "Really fun and creative, loved the puns!"),
    (False, "It kept repeating the same thing over and over."),
    (True, "Engaging story, stayed in character."),
    (False, "Boring and way too short. Email me at jo@example.com if it gets better"),
    (False, "Nonsense answers, did not make sense at all."),
    (True, "Funny! Call me on +44 20 7946 0958 when the next version is out"),
)


@dataclass(frozen=True)
class SimulatedChat:
    conversation_id: str
    submission_id: str
    turns: int
    thumbs_up: bool
    feedback_text: str


def _persona(user_index: int) -> dict[str, str]:
    bot_name, memory, prompt = PERSONAS[user_index % len(PERSONAS)]
    return {
        "user_id": f"app-user-{user_index}",
        "bot_id": f"bot-{user_index % len(PERSONAS)}",
        "bot_name": bot_name,
        "user_name": "You",
        "memory": memory,
        "prompt": prompt,
    }


def simulate_user_over_http(beta: httpx.Client, user_index: int, turns: int = 2) -> SimulatedChat:
    """The same beta user as `simulate_user`, through the service's beta routes, as the app's backend
    calls them (`beta` carries the service's base URL and the beta service token)."""
    conversation = _ok(beta.post("/beta/conversations", json=_persona(user_index)))
    conversation_id = conversation["conversation_id"]
    for turn in range(turns):
        message = {"message": OPENERS[(user_index + turn) % len(OPENERS)]}
        _ok(beta.post(f"/beta/conversations/{conversation_id}/messages", json=message))
    thumbs_up, text = FEEDBACK[user_index % len(FEEDBACK)]
    feedback = {"thumbs_up": thumbs_up, "text": text, "idempotency_key": f"{conversation_id}-fb"}
    _ok(beta.post(f"/beta/conversations/{conversation_id}/feedback", json=feedback))
    return SimulatedChat(conversation_id, conversation["submission_id"], turns, thumbs_up, text)


def _ok(response: httpx.Response) -> dict:
    if response.is_error:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: HTTP {response.status_code} "
            f"{response.text[:300]}"
        )
    return response.json()


def simulate_user(store: Store, user_index: int, turns: int = 2, seed: int = 0) -> SimulatedChat:
    """One beta user: routed to a model, `turns` messages, then feedback."""
    rng = random.Random(seed * 1000 + user_index)
    persona = _persona(user_index)
    with store.session() as session:
        conversation = start_conversation(session, **persona, rng=rng)
        conversation_id, submission_id = conversation.id, conversation.submission_id
    for turn in range(turns):
        send_message(store, conversation_id, OPENERS[(user_index + turn) % len(OPENERS)])
    thumbs_up, text = FEEDBACK[user_index % len(FEEDBACK)]
    with store.session() as session:
        leave_feedback(
            session, conversation_id, thumbs_up=thumbs_up, text=text, idempotency_key=f"{conversation_id}-fb"
        )
    return SimulatedChat(conversation_id, submission_id, turns, thumbs_up, text)


@dataclass(frozen=True)
class SimulatedBattle:
    battle_id: str
    winner: str
    counted: bool
    model_a: str
    model_b: str


def simulate_battle_over_http(
    beta: httpx.Client, store: Store, user_index: int, rng: random.Random, strengths: dict[str, float]
) -> SimulatedBattle:
    """One arena user: a battle with one message, then a vote drawn from a Bradley–Terry model.

    The user's latent taste is `strengths` (submission id → log-strength): side A wins with probability
    1 / (1 + exp(s_B - s_A)). A real user judges the two replies; this test double stands in for that
    judgement by peeking at which submission answers each side through the store before voting, which the
    app never can (the routes reveal the models only after the vote). Each battle is a new user, so no vote
    is excluded as a repeat of the same pair by the same user.
    """
    persona = _persona(user_index)
    request = {key: persona[key] for key in ("user_name", "bot_name", "memory", "prompt")}
    battle = _ok(beta.post("/beta/battles", json={**request, "user_id": f"arena-user-{user_index}"}))
    battle_id = battle["battle_id"]
    message = {"message": OPENERS[user_index % len(OPENERS)]}
    _ok(beta.post(f"/beta/battles/{battle_id}/messages", json=message))
    with store.session() as session:
        side_a = session.get(Conversation, battle["conversation_a_id"]).submission_id
        side_b = session.get(Conversation, battle["conversation_b_id"]).submission_id
    p_a = 1 / (1 + math.exp(strengths.get(side_b, 0.0) - strengths.get(side_a, 0.0)))
    winner = "a" if rng.random() < p_a else "b"
    outcome = _ok(beta.post(f"/beta/battles/{battle_id}/vote", json={"winner": winner}))
    revealed_a, revealed_b = outcome["model_a"]["submission_id"], outcome["model_b"]["submission_id"]
    return SimulatedBattle(battle_id, winner, outcome["counted"], revealed_a, revealed_b)
