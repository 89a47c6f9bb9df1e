"""Battle votes on SQLite and PostgreSQL: stored once, one counted vote per user and pair, no voting for one's
own model, flagged voters left out of the votes ratings use."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from guanaco_dagster.arena.config import ArenaConfig
from guanaco_dagster.arena.counted_votes import counted_votes, flagged_voters
from guanaco_dagster.arena.votes import (
    OWN_MODEL,
    REPEAT_PAIR,
    SAME_MODEL,
    CountedVote,
    VoteRefused,
    record_vote,
)
from guanaco_dagster.beta.conversations import start_conversation
from guanaco_dagster.cli import app
from guanaco_dagster.store.models import Battle, BattleVote, Conversation
from guanaco_dagster.submissions.developers import create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission
from tests.fixtures.store import walk_to


@pytest.fixture
def models(store) -> list[str]:
    """Three deployed submissions: two by ada, one by grace."""
    ids = []
    with store.session() as session:
        ada, _ = create_developer(session, "ada")
        grace, _ = create_developer(session, "grace")
        for developer, repo in ((ada, "ada/one"), (ada, "ada/two"), (grace, "grace/one")):
            submission = create_submission(session, developer, SubmissionRequest(model_repo=repo))
            walk_to(session, submission.id, Status.DEPLOYED)
            ids.append(submission.id)
    return ids


def _battle(store, user_id: str, model_a: str, model_b: str) -> str:
    with store.session() as session:
        sides = [
            start_conversation(session, user_id=user_id, submission_id=sid) for sid in (model_a, model_b)
        ]
        battle = Battle(
            id=uuid.uuid4().hex, user_id=user_id, conversation_a_id=sides[0].id, conversation_b_id=sides[1].id
        )
        session.add(battle)
        return battle.id


def _vote(store, battle_id: str, winner: str) -> tuple[bool, str | None, bool]:
    """(counted, excluded_reason, created) of the stored vote."""
    with store.session() as session:
        battle = session.get_one(Battle, battle_id)
        a, b = (session.get_one(Conversation, cid).submission_id for cid in _conversation_ids(battle))
        vote, created = record_vote(session, battle, a, b, winner)
        return vote.counted, vote.excluded_reason, created


def _conversation_ids(battle: Battle) -> tuple[str, str]:
    return battle.conversation_a_id, battle.conversation_b_id


def test_a_retried_vote_is_stored_once_and_a_changed_verdict_is_refused(store, models):
    battle_id = _battle(store, "user-1", models[0], models[2])
    assert _vote(store, battle_id, "a") == (True, None, True)
    assert _vote(store, battle_id, "a") == (True, None, False)
    with pytest.raises(VoteRefused, match="already has the vote 'a'"):
        _vote(store, battle_id, "b")
    with store.session() as session:
        assert len(session.scalars(select(BattleVote)).all()) == 1


def test_an_unknown_verdict_is_refused_naming_the_choices(store, models):
    battle_id = _battle(store, "user-1", models[0], models[2])
    with pytest.raises(VoteRefused, match="winner 'maybe' is not one of a, b, tie, both_bad"):
        _vote(store, battle_id, "maybe")


def test_only_a_users_first_vote_on_a_pair_counts_in_either_order(store, models):
    first = _battle(store, "user-1", models[0], models[2])
    again_swapped = _battle(store, "user-1", models[2], models[0])
    other_pair = _battle(store, "user-1", models[1], models[2])
    other_user = _battle(store, "user-2", models[0], models[2])
    assert _vote(store, first, "a")[:2] == (True, None)
    assert _vote(store, again_swapped, "a")[:2] == (False, REPEAT_PAIR)
    assert _vote(store, other_pair, "tie")[:2] == (True, None)
    assert _vote(store, other_user, "b")[:2] == (True, None)
    with store.session() as session:
        votes = counted_votes(session)
    assert [(v.user_id, v.submission_a, v.submission_b, v.winner) for v in votes] == [
        ("user-1", models[0], models[2], "a"),
        ("user-1", models[1], models[2], "tie"),
        ("user-2", models[0], models[2], "b"),
    ]
    assert all(isinstance(v, CountedVote) for v in votes)


def test_a_developer_voting_on_their_own_model_is_stored_but_not_counted(store, models):
    # ada's models are models[0] and models[1]; the app sends her Guanaco name as the user id.
    own = _battle(store, "ada", models[0], models[2])
    others = _battle(store, "grace-fan", models[0], models[2])
    assert _vote(store, own, "a")[:2] == (False, OWN_MODEL)
    assert _vote(store, others, "a")[:2] == (True, None)
    with store.session() as session:
        assert [v.user_id for v in counted_votes(session)] == ["grace-fan"]


def test_a_battle_whose_sides_ended_on_one_model_is_stored_but_compares_nothing(store, models):
    # Both sides failing their first reply at once can move both to the same replacement model.
    battle_id = _battle(store, "user-1", models[0], models[0])
    assert _vote(store, battle_id, "a")[:2] == (False, SAME_MODEL)
    with store.session() as session:
        assert counted_votes(session) == []


def _votes_with_one_contrarian(store, models: list[str]) -> None:
    """20 honest users agree best > middle > worst on every pair; one user votes the other way each time."""
    best, middle, worst = models
    pairs = [(best, middle), (middle, worst), (best, worst)]
    for n in range(20):
        for a, b in pairs:
            _vote(store, _battle(store, f"honest-{n}", a, b), "a")
    for a, b in pairs:
        _vote(store, _battle(store, "contrarian", a, b), "b")


def test_a_voter_who_contradicts_everyone_is_flagged_and_left_out_of_the_counted_votes(store, models):
    _votes_with_one_contrarian(store, models)
    with store.session() as session:
        arena = ArenaConfig(anomaly_min_votes=3)
        counted_users = {v.user_id for v in counted_votes(session, arena)}
        flagged = flagged_voters(session, arena)
    assert list(flagged) == ["contrarian"]
    score, votes_left_out = flagged["contrarian"]
    assert score >= 3.0 and votes_left_out == 3
    assert "contrarian" not in counted_users and len(counted_users) == 20


def test_operators_see_no_flagged_voter_until_one_has_enough_votes(store, models, monkeypatch):
    # The default minimum of decisive votes before a user is judged is far above three.
    _votes_with_one_contrarian(store, models)
    monkeypatch.setenv("GUANACO_DATABASE_URL", store.url)
    result = CliRunner().invoke(app, ["admin", "flagged-voters"])
    assert result.exit_code == 0, result.output
    assert "no voter is flagged" in result.output
    as_json = CliRunner().invoke(app, ["admin", "flagged-voters", "--json"])
    assert json.loads(as_json.stdout) == {}
