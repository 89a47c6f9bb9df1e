"""Chai's client (chaiverse) against the live service: its leaderboard, feedback metrics, competitions and
evaluate calls, replayed from its published source (tests/fixtures/chai_client.py), work unchanged."""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime

import pytest

from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.store.models import Message
from tests.fixtures.chai_client import ChaiClientReplay, FeedbackMetrics

# Feedback and leaderboard routes never call the model: a submission marked deployed is enough.
UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


def _rate(service, submission_id: str, user_id: str, thumbs_up: bool, bot_replies: list[str]) -> None:
    """One conversation of `user_id` with the model, a user line before each bot reply, then feedback."""
    with service.store.session() as session:
        conversation = start_conversation(
            session, user_id=user_id, bot_id="nova_v2", bot_name="Nova", submission_id=submission_id
        )
        for reply in bot_replies:
            session.add(Message(conversation_id=conversation.id, sender="user", content="Tell me more"))
            session.add(Message(conversation_id=conversation.id, sender="bot", content=reply))
        session.flush()
        leave_feedback(session, conversation.id, thumbs_up=thumbs_up, text="")


@pytest.fixture(scope="module")
def rated(service) -> tuple[str, float]:
    """Alice's model with feedback from two users (one of them twice), and when the feedback began."""
    started = time.time()
    submission_id = service.deployed_submission(
        service.alice_key, UNUSED_ENDPOINT, "unused", f"alice/chai-{uuid.uuid4().hex[:6]}"
    )
    _rate(service, submission_id, "app-user-1", True, ["Arr, the sea!", "Arr, the sea!"])
    _rate(service, submission_id, "app-user-2", False, ["Hello there.", "A storm comes."])
    _rate(service, submission_id, "app-user-1", False, ["Again?"])
    return submission_id, started


@pytest.fixture
def chai(service) -> ChaiClientReplay:
    return ChaiClientReplay(service.url, service.alice_key)


def test_the_leaderboard_answers_chais_client_without_a_key(service, rated):
    submission_id, _ = rated
    board = ChaiClientReplay(service.url, developer_key="").get_submissions(developer_key=None)
    assert board[submission_id]["total_feedback_count"] == 3


def test_display_leaderboard_formats_our_rows(chai, rated):
    submission_id, _ = rated
    table = chai.display_leaderboard()
    row = table[table.submission_id == submission_id]
    # display_leaderboard keeps one row per developer: alice's best model may be another one of hers.
    shown = row if len(row) else table[table.developer_uid == "alice"]
    assert len(shown) == 1 and shown.iloc[0]["developer_uid"] == "alice"
    assert shown.iloc[0]["size"] == "n/a" and shown.iloc[0]["status"] == "deployed"


def test_feedback_metrics_read_our_keys_records_and_senders(chai, rated):
    submission_id, started = rated
    raw, _ = chai.get_feedback_rows(submission_id)
    epochs = [int(key.split("_")[-1]) for key in raw["feedback"]]
    # A key that would collide with an earlier one (same user and bot, same second) moves on a second.
    assert all(int(started) <= epoch <= time.time() + len(epochs) for epoch in epochs)
    assert len(set(raw["feedback"])) == len(epochs)
    assert all(record["conversation_id"] == key for key, record in raw["feedback"].items())

    metrics = FeedbackMetrics(raw)
    metrics.filter_for_date_range(None)
    metrics.filter_duplicated_uid()  # app-user-1 rated twice: chaiverse keeps one per user
    result = metrics.calc_metrics()
    assert result["total_feedback_count"] == 2
    assert result["thumbs_up_ratio"] == 0.5
    assert result["mcl"] == 4.0
    assert result["repetition"] == pytest.approx(0.5)  # one conversation repeats itself, one does not


def test_feedback_outside_the_evaluation_window_is_left_out(chai, rated):
    submission_id, _ = rated
    raw, _ = chai.get_feedback_rows(submission_id)
    metrics = FeedbackMetrics(raw)
    metrics.filter_for_date_range(
        {"start_date": "2000-01-01T00:00:00+00:00", "end_date": "2001-01-01T00:00:00+00:00"}
    )
    assert metrics.calc_metrics() == {}


def test_get_leaderboard_with_feedback_fetches_each_models_metrics(chai, rated):
    submission_id, _ = rated
    frame = chai.get_leaderboard_frame(developer_key=chai.developer_key, fetch_feedback=True)
    mine = frame[frame.submission_id == submission_id].iloc[0]
    assert mine["total_feedback_count"] == 2 and mine["mcl"] == 4.0


def test_our_standard_error_is_the_correct_one_not_chaiverses(chai, rated):
    submission_id, _ = rated
    ours = chai.get_submissions()[submission_id]
    p, n = 1 / 3, 3
    assert ours["thumbs_up_ratio_se"] == pytest.approx(math.sqrt(p * (1 - p) / n))
    assert ours["thumbs_up_ratio_se"] != pytest.approx(p * (1 - p) / math.sqrt(n))


def test_model_info_names_the_developer_as_chaiverse_does(chai, rated):
    info = chai.get_model_info(rated[0])
    assert (info["developer_uid"], info["reward_repo"]) == ("alice", None)


def test_competitions_are_monthly_windows_with_the_current_one_last(chai, rated):
    submission_id, _ = rated
    competitions = chai.get_competitions()
    current = competitions[-1]
    assert submission_id in current["submissions"]
    start = datetime.fromisoformat(current["submission_start_date"])
    end = datetime.fromisoformat(current["submission_end_date"])
    assert start.tzinfo is not None and start.day == 1 and start < datetime.now(start.tzinfo) < end
    window = {"start_date": current["submission_start_date"], "end_date": current["submission_end_date"]}
    assert submission_id in chai.get_submissions(params=window)


def test_a_submission_window_before_the_model_leaves_it_out(chai, rated):
    window = {"start_date": "2000-01-01T00:00:00+00:00", "end_date": "2000-02-01T00:00:00+00:00"}
    assert rated[0] not in chai.get_submissions(params=window)


def test_evaluate_tells_where_the_model_stands(chai, rated):
    evaluation = chai.evaluate_model(rated[0])
    assert evaluation["min_feedback"] == 5
    row = evaluation["leaderboard"]
    assert row["provisional"] is True and row["overall_rank"] >= 1
    assert row["wilson_lower_bound"] < row["thumbs_up_ratio"] < row["wilson_upper_bound"]


def test_evaluate_of_another_developers_model_is_not_found(service, rated):
    response = service.client(service.bob_key).get(f"/models/{rated[0]}/evaluate")
    assert response.status_code == 404
