"""Implicit signals on SQLite and PostgreSQL: conversation length, regenerations per reply and early exits
per model, each with its 95 % interval; battle conversations count for regenerations only."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from guanaco_dagster.arena.implicit_signals import implicit_signals, mean_interval
from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.feedback.feedback_metrics import wilson_interval
from guanaco_dagster.feedback.feedback_report import build_feedback_report
from guanaco_dagster.store.models import Battle, Message, utcnow
from guanaco_dagster.submissions.developers import create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission
from tests.fixtures.store import walk_to

NOW = utcnow()


@pytest.fixture
def model(store) -> str:
    with store.session() as session:
        developer, _ = create_developer(session, "ada")
        submission = create_submission(session, developer, SubmissionRequest(model_repo="ada/chat"))
        walk_to(session, submission.id, Status.DEPLOYED)
        return submission.id


def _conversation(store, model: str, turns: list[str], *, age_min: float = 60, feedback: bool = False) -> str:
    """A conversation `age_min` minutes old; `turns`: "u" user, "b" bot, "r" a regenerated bot reply."""
    with store.session() as session:
        conversation = start_conversation(session, user_id="u", submission_id=model)
        conversation.created_at = NOW - timedelta(minutes=age_min)
        for turn in turns:
            sender = "user" if turn == "u" else "bot"
            session.add(
                Message(conversation_id=conversation.id, sender=sender, content=turn, regenerated=turn == "r")
            )
        session.flush()
        if feedback:
            leave_feedback(session, conversation.id, thumbs_up=True)
        return conversation.id


def test_each_signal_is_counted_per_model_with_its_interval(store, model):
    _conversation(store, model, ["u", "b", "u", "b", "u", "b"], feedback=True)  # 3 turns
    _conversation(store, model, ["u", "r", "r", "b"])  # 1 turn, two replies regenerated: an early exit
    _conversation(store, model, ["u", "b"], feedback=True)  # 1 turn with feedback: not an early exit
    _conversation(store, model, [])  # opened and left: an early exit
    _conversation(store, model, ["u", "b"], age_min=5)  # may still be going on: not judged yet
    with store.session() as session:
        signals = implicit_signals(session, now=NOW, early_exit_after_min=30)[model]
    assert signals.conversations == 5
    assert signals.mean_user_turns == pytest.approx(6 / 5)
    assert (signals.mean_user_turns_low, signals.mean_user_turns_high) == pytest.approx(
        mean_interval([3, 1, 1, 0, 1])[1:]
    )
    assert (signals.regenerations.count, signals.regenerations.total) == (2, 8)
    assert (signals.regenerations.low, signals.regenerations.high) == pytest.approx(wilson_interval(2, 8))
    assert (signals.early_exits.count, signals.early_exits.total) == (2, 4)
    assert signals.early_exits.rate == pytest.approx(0.5)


def test_battle_conversations_count_for_regenerations_but_not_length_or_exits(store, model):
    single = _conversation(store, model, ["u", "b", "u", "b"])
    side_a = _conversation(store, model, ["u", "r", "b"])
    side_b = _conversation(store, model, ["u", "b"])
    with store.session() as session:
        session.add(
            Battle(id=uuid.uuid4().hex, user_id="u", conversation_a_id=side_a, conversation_b_id=side_b)
        )
    with store.session() as session:
        signals = implicit_signals(session, now=NOW)[model]
    assert single and signals.conversations == 1 and signals.mean_user_turns == 2
    assert (signals.regenerations.count, signals.regenerations.total) == (1, 5)
    assert signals.early_exits.total == 1 and signals.early_exits.count == 0


def test_a_model_nobody_talked_to_has_no_rates_rather_than_zero(store, model):
    with store.session() as session:
        signals = implicit_signals(session, [model], now=NOW)[model]
    assert signals.conversations == 0 and signals.mean_user_turns is None
    assert signals.regenerations.rate is None and signals.early_exits.rate is None


def test_the_feedback_report_shows_the_implicit_signals_section(store, model):
    _conversation(store, model, ["u", "r", "b", "u", "b"], feedback=True)
    with store.session() as session:
        report = build_feedback_report(session, model, pseudonym_key=b"k" * 32)
    assert report["implicit_signals"]["regenerations"]["count"] == 1
    assert "| Regenerations per reply (Wilson) | 33.3% (6.1% – 79.2%) | 3 replies |" in report["markdown"]
    # The regenerated reply is not part of the conversation the user went on with.
    assert report["summary"]["mean_conversation_length"] == 4
