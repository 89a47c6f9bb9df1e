"""Arena ratings: Bradley–Terry on the Elo scale against a simulated arena whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from guanaco_dagster.arena.ratings import ELO_ANCHOR, fit_ratings
from guanaco_dagster.arena.votes import CountedVote
from guanaco_dagster.testing.arena_simulation import (
    EPOCH,
    make_world,
    simulate_votes,
    true_elo,
    uniform_pairs,
)


def _votes(pairs: list[tuple[str, str, str]]) -> list[CountedVote]:
    """One vote per user (the intervals are clustered by user)."""
    return [CountedVote(a, b, winner, f"user-{i}", EPOCH) for i, (a, b, winner) in enumerate(pairs)]


def test_the_fitted_order_matches_the_latent_order_when_the_gaps_are_clear():
    rng = np.random.default_rng(7)
    world = make_world(rng, models=5, spread_elo=400.0)
    ratings = fit_ratings(simulate_votes(world, uniform_pairs(5, 3000, rng), rng))
    fitted = [ratings[name].elo for name in world.models]
    assert spearmanr(fitted, world.strengths_elo).statistic == pytest.approx(1.0)


def test_ratings_are_anchored_at_a_mean_of_1000_on_the_elo_scale():
    # 3 wins of 4: P = 0.75 = 1 / (1 + 10^(-d/400)), so d ≈ 191 Elo (less the prior's pull).
    ratings = fit_ratings(_votes([("x", "y", "a")] * 30 + [("x", "y", "b")] * 10))
    assert (ratings["x"].elo + ratings["y"].elo) / 2 == pytest.approx(ELO_ANCHOR)
    assert ratings["x"].elo - ratings["y"].elo == pytest.approx(400 * np.log10(3), abs=5)


def test_the_95_percent_intervals_cover_the_true_ratings_at_about_the_nominal_rate():
    rng = np.random.default_rng(11)
    covered = []
    for _ in range(20):
        world = make_world(rng, models=5, users=60)
        truth = true_elo(world)
        ratings = fit_ratings(simulate_votes(world, uniform_pairs(5, 800, rng), rng))
        covered += [
            ratings[m].ci_low <= t <= ratings[m].ci_high for m, t in zip(world.models, truth, strict=True)
        ]
    assert 0.85 <= np.mean(covered) <= 0.99


def test_a_tie_is_half_a_win_for_each_side_and_both_bad_is_a_tie():
    split = fit_ratings(_votes([("x", "y", "a")] * 10 + [("x", "y", "b")] * 10))
    ties = fit_ratings(_votes([("x", "y", "tie")] * 20))
    both_bad = fit_ratings(_votes([("x", "y", "both_bad")] * 20))
    assert ties["x"].elo == pytest.approx(ties["y"].elo)
    assert both_bad == ties
    # Same point estimate as ten wins each, but a tie is a surer outcome, so the robust interval is narrower.
    assert split["x"].elo == pytest.approx(ties["x"].elo)
    assert ties["x"].ci_high - ties["x"].ci_low < split["x"].ci_high - split["x"].ci_low


def test_battles_wins_and_provisional_status_are_counted_per_model():
    votes = _votes([("x", "y", "a")] * 6 + [("y", "z", "a")] * 3 + [("x", "z", "tie")] * 2)
    ratings = fit_ratings(votes, min_battles=5)
    assert {name: (r.battles, r.wins, r.provisional) for name, r in ratings.items()} == {
        "x": (8, 6, False),
        "y": (9, 3, False),
        "z": (5, 0, False),
    }
    assert fit_ratings(votes, min_battles=6)["z"].provisional


def test_a_model_that_won_every_battle_gets_a_finite_rating_with_a_wide_interval():
    few = fit_ratings(_votes([("x", "y", "a")] * 3))
    many = fit_ratings(_votes([("x", "y", "a")] * 300 + [("x", "y", "b")] * 100))
    assert np.isfinite(few["x"].elo) and few["x"].elo > few["y"].elo
    assert few["x"].ci_high - few["x"].ci_low > many["x"].ci_high - many["x"].ci_low


def test_no_votes_means_no_ratings_and_a_bad_outcome_is_refused_by_name():
    assert fit_ratings([]) == {}
    with pytest.raises(ValueError, match="unknown vote outcome 'draw'"):
        fit_ratings(_votes([("x", "y", "draw")]))
