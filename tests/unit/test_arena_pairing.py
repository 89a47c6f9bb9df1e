"""Battle pairing: active pairs shrink the intervals faster than uniform ones; new models are tried first."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest

from guanaco_dagster.arena.pairing import choose_pair, choose_single, pair_gains, pair_probabilities
from guanaco_dagster.arena.ratings import battle_table
from guanaco_dagster.arena.votes import CountedVote
from guanaco_dagster.beta.routing import NoModelAvailable, RoutingCandidate
from guanaco_dagster.testing.arena_simulation import (
    EPOCH,
    make_world,
    simulate_votes,
    uniform_pairs,
    votes_until_precise,
)


def _candidates(*ids: str) -> list[RoutingCandidate]:
    return [RoutingCandidate(i, EPOCH + timedelta(days=n), 0) for n, i in enumerate(ids)]


def _votes(pairs: list[tuple[str, str, str]]) -> list[CountedVote]:
    return [CountedVote(a, b, winner, f"user-{i}", EPOCH) for i, (a, b, winner) in enumerate(pairs)]


def test_active_pairing_rates_a_new_model_within_the_target_with_fewer_votes_than_uniform():
    rng = np.random.default_rng(3)
    world = make_world(rng, models=5)
    # Four models already have a settled leaderboard; model-4 has just been deployed.
    settled = simulate_votes(world, uniform_pairs(4, 1500, rng), rng)
    needed = {
        policy: votes_until_precise(world, policy, np.random.default_rng(5), 80.0, settled, batch=25)
        for policy in ("active", "uniform")
    }
    assert needed["active"] < 0.7 * needed["uniform"], needed


def test_a_new_model_is_in_most_active_pairs_until_it_has_battles():
    votes = _votes([(a, b, "a") for a, b in [("x", "y"), ("y", "z"), ("x", "z")] * 40])
    table = battle_table(votes, models=["x", "y", "z", "new"])
    probabilities = pair_probabilities(table, new_model_boost=10.0, eligible=range(4))
    with_new = sum(p for (a, b), p in probabilities.items() if 3 in (a, b))
    assert with_new > 0.9


def test_with_equal_uncertainty_a_close_pair_gains_more_than_a_lopsided_one():
    # Models 0 and 1 are even, model 2 is 3 nats (~520 Elo) weaker: a 0–2 vote is nearly a foregone result.
    gains = pair_gains(
        np.array([0.0, 0.0, -3.0]), np.eye(3) * 0.1, np.array([50, 50, 50]), new_model_boost=0.0
    )
    assert gains[0, 1] > 3 * gains[0, 2]
    assert gains[0, 2] == pytest.approx(gains[1, 2])


def test_choose_pair_returns_two_distinct_candidates_and_uniform_covers_every_pair_evenly():
    rng = random.Random(0)
    candidates = _candidates("x", "y", "z")
    first, second = choose_pair(candidates, _votes([("x", "y", "a")]), rng)
    assert first != second and {first, second} <= {"x", "y", "z"}
    counts = Counter(frozenset(choose_pair(candidates, [], rng, policy="uniform")) for _ in range(900))
    assert len(counts) == 3 and all(250 <= n <= 350 for n in counts.values())


def test_a_battle_needs_two_models_and_a_known_policy():
    with pytest.raises(NoModelAvailable, match="a battle needs two deployed models"):
        choose_pair(_candidates("x"), [], random.Random(0))
    with pytest.raises(ValueError, match="unknown battle routing policy 'newest'"):
        choose_pair(_candidates("x", "y"), [], random.Random(0), policy="newest")


def test_active_single_routing_favours_the_model_with_the_least_feedback():
    rng = random.Random(1)
    candidates = _candidates("rated", "new")
    counts = {"rated": (60, 100), "new": (0, 0)}
    chosen = Counter(choose_single(candidates, [], counts, rng) for _ in range(300))
    assert chosen["new"] > 250


def test_newest_single_routing_is_the_existing_beta_policy():
    rng = random.Random(2)
    candidates = _candidates("old", "newer")
    chosen = Counter(choose_single(candidates, [], {}, rng, policy="newest") for _ in range(300))
    # routing_weights: (target − feedback + 1) / recency rank → 101 for the newest, 50.5 for the other.
    assert 170 <= chosen["newer"] <= 230
    with pytest.raises(NoModelAvailable):
        choose_single([], [], {}, rng)
