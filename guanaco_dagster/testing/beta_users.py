"""Simulated beta users: scripted app users who chat with routed models and leave feedback."""

from __future__ import annotations

import random
from dataclasses import dataclass

from guanaco_dagster.beta.conversations import leave_feedback, send_message, start_conversation
from guanaco_dagster.store.database import Store

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


def simulate_user(store: Store, user_index: int, turns: int = 2, seed: int = 0) -> SimulatedChat:
    """One beta user: routed to a model, `turns` messages, then feedback."""
    rng = random.Random(seed * 1000 + user_index)
    bot_name, memory, prompt = PERSONAS[user_index % len(PERSONAS)]
    with store.session() as session:
        conversation = start_conversation(
            session,
            user_id=f"app-user-{user_index}",
            bot_id=f"bot-{user_index % len(PERSONAS)}",
            bot_name=bot_name,
            user_name="You",
            memory=memory,
            prompt=prompt,
            rng=rng,
        )
        conversation_id, submission_id = conversation.id, conversation.submission_id
    for turn in range(turns):
        send_message(store, conversation_id, OPENERS[(user_index + turn) % len(OPENERS)])
    thumbs_up, text = FEEDBACK[user_index % len(FEEDBACK)]
    with store.session() as session:
        leave_feedback(
            session, conversation_id, thumbs_up=thumbs_up, text=text, idempotency_key=f"{conversation_id}-fb"
        )
    return SimulatedChat(conversation_id, submission_id, turns, thumbs_up, text)
