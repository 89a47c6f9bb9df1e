"""The demo's simulated arena users: they battle over the beta battle routes and vote by a Bradley–Terry
draw from their latent strengths, so the leaderboard's battle rating recovers who they prefer.

The beta service here is an httpx transport over the real battle functions on SQLite; only the two models'
replies are canned (no inference server: the vote, not the reply, is under test)."""

from __future__ import annotations

import json
import random
import re

import httpx

from guanaco_dagster.arena.battles import start_battle, vote_on_battle
from guanaco_dagster.feedback.leaderboard import build_leaderboard
from guanaco_dagster.store.models import Battle, Message
from guanaco_dagster.submissions.developers import create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission
from guanaco_dagster.testing.beta_users import simulate_battle_over_http
from tests.fixtures.store import walk_to

BATTLES = 120


def _deployed(store, developer_name: str, repo: str) -> str:
    with store.session() as session:
        developer, _ = create_developer(session, developer_name)
        submission = create_submission(session, developer, SubmissionRequest(model_repo=repo))
        walk_to(session, submission.id, Status.DEPLOYED)
        submission.endpoint_url = f"http://127.0.0.1:1/{developer_name}"
        return submission.id


def _beta_service(store) -> httpx.Client:
    """The beta battle routes' answers, from the battle functions the service calls."""
    rng = random.Random(7)

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        path = request.url.path
        with store.session() as session:
            if path == "/beta/battles":
                battle = start_battle(session, user_id=body["user_id"], rng=rng)
                return httpx.Response(200, json={"battle_id": battle.id, **_sides(battle)})
            battle_id = re.fullmatch(r"/beta/battles/([^/]+)/(messages|vote)", path)
            assert battle_id, path
            battle = session.get_one(Battle, battle_id[1])
            if battle_id[2] == "messages":
                for conversation_id in _sides(battle).values():
                    session.add(
                        Message(conversation_id=conversation_id, sender="user", content=body["message"])
                    )
                    session.add(Message(conversation_id=conversation_id, sender="bot", content="Hello!"))
                return httpx.Response(
                    200, json={"battle_id": battle.id, "reply_a": "Hello!", "reply_b": "Hello!"}
                )
            outcome = vote_on_battle(session, battle.id, body["winner"])
            revealed = {side: vars(getattr(outcome, side)) for side in ("model_a", "model_b")}
            return httpx.Response(200, json={"counted": outcome.counted, **revealed})

    return httpx.Client(base_url="http://beta.test", transport=httpx.MockTransport(handle))


def _sides(battle: Battle) -> dict[str, str]:
    return {"conversation_a_id": battle.conversation_a_id, "conversation_b_id": battle.conversation_b_id}


def test_simulated_users_vote_by_their_latent_strengths_and_the_rating_recovers_them(sqlite_store):
    store = sqlite_store
    strong, weak = _deployed(store, "ada", "ada/strong"), _deployed(store, "bob", "bob/weak")
    strengths = {strong: 1.5, weak: 0.0}  # the strong model wins 82 % of battles
    rng = random.Random(0)
    with _beta_service(store) as beta:
        battles = [simulate_battle_over_http(beta, store, user, rng, strengths) for user in range(BATTLES)]

    assert all(battle.counted for battle in battles)
    assert {battle.model_a for battle in battles} == {strong, weak}
    strong_wins = sum((b.model_a if b.winner == "a" else b.model_b) == strong for b in battles)
    assert 0.72 * BATTLES < strong_wins < 0.92 * BATTLES
    with store.session() as session:
        rows = {row.submission_id: row for row in build_leaderboard(session, min_feedback=1)}
    assert rows[strong].num_battles == rows[weak].num_battles == BATTLES
    assert rows[strong].num_wins == strong_wins
    assert rows[strong].bt_ci_low > rows[weak].bt_ci_high
