"""Battles through the service (real uvicorn, the session's vLLM server) on PostgreSQL and on SQLite: two
anonymous models answer side by side, the vote is stored once and only then reveals them, a side can be
regenerated, anti-gaming rules decide which votes count, and the leaderboard carries the battle rating."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from guanaco_dagster.cli import app
from guanaco_dagster.ports import free_port
from guanaco_dagster.store.models import Battle, Conversation, Message
from guanaco_dagster.submissions.submissions import get_submission
from guanaco_dagster.testing.scratch_postgres import temporary_postgres_database
from tests.fixtures.service import ServiceFixture, running_service


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def arena(request, tmp_path_factory, served_tiny_model) -> Iterator[tuple[ServiceFixture, dict[str, str]]]:
    """A service of its own whose only deployed models are alice's and bob's, both on the session's vLLM
    server, so every battle pairs exactly those two. Yields the service and developer → submission id."""
    home: Path = tmp_path_factory.mktemp(f"arena-{request.param}")
    with ExitStack() as stack:
        if request.param == "postgres":
            url = stack.enter_context(temporary_postgres_database("guanaco_battles"))
        else:
            url = f"sqlite:///{home / 'guanaco.db'}"
        service = stack.enter_context(running_service(home, url))
        models = {
            name: service.deployed_submission(
                key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, f"{name}/fighter"
            )
            for name, key in (("alice", service.alice_key), ("bob", service.bob_key))
        }
        yield service, models


def _battle(service: ServiceFixture, user_id: str) -> tuple[str, dict]:
    """Start a battle for `user_id` and exchange one message; returns the battle id and the replies."""
    beta = service.beta_client()
    started = beta.post("/beta/battles", json={"user_id": user_id, "bot_name": "Nova"})
    assert started.status_code == 200, started.text
    battle_id = started.json()["battle_id"]
    replies = beta.post(f"/beta/battles/{battle_id}/messages", json={"message": "Hello! Tell me a story."})
    assert replies.status_code == 200, replies.text
    return battle_id, replies.json()


def test_a_battle_keeps_both_models_anonymous_until_the_vote_reveals_them(arena):
    service, models = arena
    beta = service.beta_client()
    started = beta.post("/beta/battles", json={"user_id": "reveal-user"}).json()
    assert set(started) == {"battle_id", "conversation_a_id", "conversation_b_id"}
    battle_id = started["battle_id"]
    replies = beta.post(f"/beta/battles/{battle_id}/messages", json={"message": "Hi there!"}).json()
    assert set(replies) == {"battle_id", "reply_a", "reply_b", "latency_a_s", "latency_b_s"}
    assert isinstance(replies["reply_a"], str) and replies["latency_a_s"] > 0 and replies["latency_b_s"] > 0
    vote = beta.post(f"/beta/battles/{battle_id}/vote", json={"winner": "a"}).json()
    revealed = {vote["model_a"]["submission_id"], vote["model_b"]["submission_id"]}
    assert revealed == set(models.values())
    assert vote["model_a"]["model_name"] and (vote["counted"], vote["excluded_reason"]) == (True, None)
    with service.store.session() as session:
        side_a = session.get_one(Conversation, started["conversation_a_id"])
        assert side_a.submission_id == vote["model_a"]["submission_id"]
        assert [m.sender for m in side_a.messages] == ["user", "bot"]


def test_a_retried_vote_is_stored_once_and_a_changed_vote_is_a_conflict(arena):
    service, _ = arena
    battle_id, _ = _battle(service, "retry-user")
    beta = service.beta_client()
    first = beta.post(f"/beta/battles/{battle_id}/vote", json={"winner": "tie"}).json()
    retry = beta.post(f"/beta/battles/{battle_id}/vote", json={"winner": "tie"}).json()
    assert (first["stored"], retry["stored"]) == (True, False)
    assert retry["model_a"] == first["model_a"]
    changed = beta.post(f"/beta/battles/{battle_id}/vote", json={"winner": "b"})
    assert changed.status_code == 409 and "cannot be changed" in changed.json()["detail"]


def test_a_battle_cannot_be_voted_on_before_both_sides_replied(arena):
    service, _ = arena
    beta = service.beta_client()
    battle_id = beta.post("/beta/battles", json={"user_id": "eager-user"}).json()["battle_id"]
    early = beta.post(f"/beta/battles/{battle_id}/vote", json={"winner": "a"})
    assert early.status_code == 409 and "both sides must have replied" in early.json()["detail"]


def test_only_a_users_first_vote_on_a_pair_counts(arena):
    service, _ = arena
    beta = service.beta_client()
    verdicts = []
    for _ in range(2):
        battle_id, _ = _battle(service, "loyal-user")
        verdicts.append(beta.post(f"/beta/battles/{battle_id}/vote", json={"winner": "b"}).json())
    assert [(v["counted"], v["excluded_reason"]) for v in verdicts] == [(True, None), (False, "repeat_pair")]


def test_a_developer_voting_in_a_battle_with_their_own_model_is_not_counted(arena):
    service, _ = arena
    # The app sends a developer's Guanaco name as the user id; alice's model is in every battle here.
    battle_id, _ = _battle(service, "alice")
    vote = service.beta_client().post(f"/beta/battles/{battle_id}/vote", json={"winner": "a"}).json()
    assert (vote["counted"], vote["excluded_reason"]) == (False, "own_model")


def test_regenerating_one_side_keeps_the_replaced_reply_marked(arena):
    service, _ = arena
    battle_id, _ = _battle(service, "picky-user")
    beta = service.beta_client()
    again = beta.post(f"/beta/battles/{battle_id}/regenerate", json={"side": "b"})
    assert again.status_code == 200, again.text
    assert again.json()["side"] == "b" and again.json()["latency_s"] > 0
    bad_side = beta.post(f"/beta/battles/{battle_id}/regenerate", json={"side": "c"})
    assert bad_side.status_code == 422
    with service.store.session() as session:
        battle_sides = _sides(session, battle_id)
        assert [(m.sender, m.regenerated) for m in battle_sides["b"].messages] == [
            ("user", False),
            ("bot", True),
            ("bot", False),
        ]
        assert battle_sides["b"].messages[-1].content == again.json()["reply"]
        assert [m.regenerated for m in battle_sides["a"].messages] == [False, False]


def test_a_single_conversation_reply_can_be_regenerated_but_not_before_a_reply(arena):
    service, _ = arena
    beta = service.beta_client()
    conversation_id = beta.post("/beta/conversations", json={"user_id": "solo-user"}).json()[
        "conversation_id"
    ]
    too_early = beta.post(f"/beta/conversations/{conversation_id}/regenerate")
    assert too_early.status_code == 409 and "no reply to regenerate" in too_early.json()["detail"]
    beta.post(f"/beta/conversations/{conversation_id}/messages", json={"message": "Hello!"})
    again = beta.post(f"/beta/conversations/{conversation_id}/regenerate")
    assert again.status_code == 200, again.text
    with service.store.session() as session:
        messages = session.scalars(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
        ).all()
    assert [(m.sender, m.regenerated) for m in messages] == [("user", False), ("bot", True), ("bot", False)]


def test_battle_routes_need_the_service_token_and_unknown_battles_are_not_found(arena):
    service, _ = arena
    assert service.client().post("/beta/battles", json={"user_id": "u"}).status_code == 401
    assert service.client(service.alice_key).post("/beta/battles", json={"user_id": "u"}).status_code == 401
    missing = service.beta_client().post("/beta/battles/nope/vote", json={"winner": "a"})
    assert missing.status_code == 404 and "no battle 'nope'" in missing.json()["detail"]


def test_the_leaderboard_carries_each_models_battle_rating(arena):
    service, models = arena
    rows = service.client().get("/leaderboard").json()
    for submission_id in models.values():
        row = rows[submission_id]
        assert row["num_battles"] >= 3 and 0 <= row["num_wins"] <= row["num_battles"]
        assert row["bt_ci_low"] < row["elo_rating"] < row["bt_ci_high"]
        assert row["battles_provisional"] is True  # far fewer battles than the minimum


def test_guanaco_leaderboard_shows_the_battle_rating_and_wins(arena, tmp_path, monkeypatch):
    service, models = arena
    monkeypatch.setenv("GUANACO_SERVICE_URL", service.url)
    monkeypatch.setenv("GUANACO_DATA_DIR", str(tmp_path))
    row = service.client().get("/leaderboard").json()[models["alice"]]
    result = CliRunner().invoke(app, ["leaderboard"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    elo = f"{row['elo_rating']:.0f} ({row['bt_ci_low']:.0f}–{row['bt_ci_high']:.0f})†"
    assert re.search(
        rf"{models['alice']}.*{re.escape(elo)}\s+│\s+{row['num_wins']} / {row['num_battles']}", result.output
    )
    as_json = json.loads(CliRunner().invoke(app, ["leaderboard", "--json"]).stdout)
    assert as_json[models["alice"]]["elo_rating"] == pytest.approx(row["elo_rating"])


def test_a_side_whose_model_fails_its_first_reply_moves_to_a_third_model(arena, served_tiny_model):
    # Runs last in this module: alice's model is broken for good afterwards.
    service, models = arena
    beta = service.beta_client()
    battle_id = beta.post("/beta/battles", json={"user_id": "failover-user"}).json()["battle_id"]
    carol = service.deployed_submission(
        service.bob_key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, "bob/understudy"
    )
    with service.store.session() as session:
        get_submission(session, models["alice"]).endpoint_url = f"http://127.0.0.1:{free_port()}/v1"
    replies = beta.post(f"/beta/battles/{battle_id}/messages", json={"message": "Hello?"})
    assert replies.status_code == 200, replies.text
    vote = beta.post(f"/beta/battles/{battle_id}/vote", json={"winner": "a"}).json()
    revealed = {vote["model_a"]["submission_id"], vote["model_b"]["submission_id"]}
    assert revealed == {models["bob"], carol}


def _sides(session, battle_id: str) -> dict[str, Conversation]:
    battle = session.get_one(Battle, battle_id)
    return {
        "a": session.get_one(Conversation, battle.conversation_a_id),
        "b": session.get_one(Conversation, battle.conversation_b_id),
    }
