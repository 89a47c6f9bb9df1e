"""Anomalous voters: one voting against the consensus far beyond chance is flagged; honest ones are not."""

from __future__ import annotations

import numpy as np
import pytest

from guanaco_dagster.arena.anomaly import (
    anomaly_scores,
    disagreement_score,
    flagged_users,
    leave_one_voter_out,
)
from guanaco_dagster.arena.ratings import BattleTable, battle_table, fit_strengths
from guanaco_dagster.testing.arena_simulation import make_world, simulate_votes, uniform_pairs


def _arena(contrarian_votes: int, seed: int = 4):
    """100 honest users with 30 votes each, and one contrarian with `contrarian_votes` votes."""
    rng = np.random.default_rng(seed)
    world = make_world(rng, models=5, spread_elo=400.0, users=100, contrarians=1)
    voters = np.concatenate([np.repeat(np.arange(100), 30), np.full(contrarian_votes, 100)])
    votes = simulate_votes(world, uniform_pairs(5, len(voters), rng), rng, voters=voters)
    return world, votes


def test_an_always_contrarian_voter_is_flagged_and_honest_voters_are_not():
    world, votes = _arena(contrarian_votes=40)
    flagged = flagged_users(votes, threshold=3.0, min_votes=20)
    assert list(flagged) == [world.user_ids[100]]
    assert flagged[world.user_ids[100]] > 5


def test_honest_scores_stay_within_chance():
    world, votes = _arena(contrarian_votes=40)
    honest = [
        score for user, score in anomaly_scores(votes, min_votes=20).items() if user != world.user_ids[100]
    ]
    assert len(honest) == 100
    # Under the null the score exceeds 1.64 about 5 % of the time; tastes make honest users a little noisier.
    assert np.mean(np.array(honest) > 1.64) < 0.12


def test_a_user_with_too_few_votes_is_never_flagged():
    world, votes = _arena(contrarian_votes=8)
    assert world.user_ids[100] not in anomaly_scores(votes, min_votes=20)
    assert world.user_ids[100] not in flagged_users(votes, threshold=3.0, min_votes=20)
    assert world.user_ids[100] in flagged_users(votes, threshold=3.0, min_votes=5)


def test_the_one_step_leave_one_out_fit_matches_a_full_refit_without_the_user():
    _, votes = _arena(contrarian_votes=200)
    table = battle_table(votes)
    approximate = leave_one_voter_out(table, fit_strengths(table), np.array([100, 0]))
    for row, voter in enumerate((100, 0)):
        kept = table.voter != voter
        without = BattleTable(
            table.models, table.first[kept], table.second[kept], table.score[kept], table.voter[kept]
        )
        # A voter with 6 % of all votes: within 0.02 nats (3.5 Elo) of the exact refit.
        assert approximate[row] == pytest.approx(fit_strengths(without), abs=0.02)


def test_agreeing_with_the_consensus_scores_zero_and_opposing_it_scores_high():
    assert disagreement_score(np.full(30, 0.8)) == 0.0
    assert disagreement_score(np.full(30, 0.2)) > 5
