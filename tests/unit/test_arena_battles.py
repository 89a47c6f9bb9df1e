"""Starting a battle on SQLite and PostgreSQL: two distinct deployed models, one conversation each."""

from __future__ import annotations

import random

import pytest

from guanaco_dagster.arena.battles import start_battle
from guanaco_dagster.beta.routing import NoModelAvailable
from guanaco_dagster.store.models import Conversation
from guanaco_dagster.submissions.developers import create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission, get_submission
from tests.fixtures.store import walk_to

# Starting a battle calls no model: an address nothing listens on is enough.
UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


def _deploy(store, count: int) -> list[str]:
    with store.session() as session:
        developer, _ = create_developer(session, "ada")
        ids = []
        for n in range(count):
            submission = create_submission(session, developer, SubmissionRequest(model_repo=f"ada/m{n}"))
            walk_to(session, submission.id, Status.DEPLOYED)
            get_submission(session, submission.id).endpoint_url = UNUSED_ENDPOINT
            ids.append(submission.id)
        return ids


@pytest.mark.parametrize("policy", ["active", "uniform", "newest"])
def test_a_battle_puts_two_distinct_deployed_models_side_by_side(store, policy):
    deployed = _deploy(store, 3)
    seen = set()
    with store.session() as session:
        for seed in range(6):
            battle = start_battle(
                session, user_id="u", user_name="Sam", rng=random.Random(seed), routing_policy=policy
            )
            sides = [
                session.get_one(Conversation, battle.conversation_a_id),
                session.get_one(Conversation, battle.conversation_b_id),
            ]
            assert sides[0].submission_id != sides[1].submission_id
            assert {s.user_name for s in sides} == {"Sam"} and {s.user_id for s in sides} == {"u"}
            seen |= {s.submission_id for s in sides}
    assert seen <= set(deployed) and len(seen) >= 2


def test_a_battle_needs_two_deployed_models(store):
    _deploy(store, 1)
    with (
        store.session() as session,
        pytest.raises(NoModelAvailable, match="a battle needs two deployed models"),
    ):
        start_battle(session, user_id="u")
