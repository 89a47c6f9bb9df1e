"""Which deployed models a new battle (or a single conversation) goes to.

Policies (`ArenaConfig.routing_policy`):
- `active` (battles): Chatbot Arena's active sampling (arXiv 2403.04132 §5) — sample a pair with probability
  proportional to how much one more vote on it is expected to shrink the rating intervals. One vote on (a, b)
  adds Fisher information w = p(1−p) along x = e_a − e_b (p = the fitted P(a beats b)); by Sherman–Morrison
  the covariance V of the centred strengths drops by w·(Vx)(Vx)ᵀ / (1 + w·xᵀVx), so the expected shrinkage
  of the summed rating variances is

      gain(a, b) = w·‖Vx‖² / (1 + w·xᵀVx).

  It is largest for pairs of models with wide intervals and close strengths (a lopsided pair's outcome is
  nearly certain and teaches little). Sampling ∝ gain, rather than taking the best pair, keeps every pair
  possible and the choice unpredictable to a voter.
- `active` (single conversations): the same idea for the thumbs-up ratio p̃ = (up + 1)/(n + 2): one more
  feedback shrinks its standard error by √(p̃(1−p̃))·(1/√(n+1) − 1/√(n+2)).
- `uniform`: every pair (model) equally likely.
- `newest` (single conversations): `beta.routing.routing_weights`, the newest and hungriest model first.

Both active rules multiply by the new-model boost 1 + boost/(1 + n), n = the battles of the pair's
less-tested model (battles + feedback for a single model), so a new submission gets its first votes fast.

Measured by `benchmarks/bench_arena.py`: when a model joins a settled leaderboard, active pairing brings
every interval within the target with ~1/3 of the votes uniform pairing needs; from a cold start (every
model new, similar strengths) uniform pairing is already close to the best design and the saving is ~5 %.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import numpy as np

from guanaco_dagster.arena.config import ArenaConfig
from guanaco_dagster.arena.ratings import BattleTable, battle_table, fisher_covariance, fit_strengths
from guanaco_dagster.arena.votes import CountedVote
from guanaco_dagster.beta.routing import NoModelAvailable, RoutingCandidate, routing_weights

DEFAULT_BOOST = ArenaConfig.model_fields["new_model_boost"].default
BATTLE_POLICIES = ("active", "uniform")
SINGLE_POLICIES = ("active", "uniform", "newest")


def battles_per_model(table: BattleTable) -> np.ndarray:
    """How many votes each model of `table` took part in."""
    count = len(table.models)
    return np.bincount(table.first, minlength=count) + np.bincount(table.second, minlength=count)


def pair_gains(
    strengths: np.ndarray, covariance: np.ndarray, battles: np.ndarray, new_model_boost: float
) -> np.ndarray:
    """gain(a, b) × new-model boost for every pair of model indices (a K×K matrix, zero on the diagonal)."""
    count = len(strengths)
    p = 1.0 / (1.0 + np.exp(strengths[None, :] - strengths[:, None]))
    information = p * (1 - p)
    # V·x for x = e_a − e_b is row a minus row b (V is symmetric), stacked as [a, b, :].
    spread = covariance[:, None, :] - covariance[None, :, :]
    along = np.einsum("abk,abk->ab", spread, spread)
    variance_of_difference = np.diag(covariance)[:, None] + np.diag(covariance)[None, :] - 2 * covariance
    gains = information * along / (1.0 + information * variance_of_difference)
    fewer_battles = np.minimum(battles[:, None], battles[None, :])
    gains *= 1.0 + new_model_boost / (1.0 + fewer_battles)
    gains[np.arange(count), np.arange(count)] = 0.0
    return gains


def _require_two(candidates: Sequence[RoutingCandidate]) -> list[str]:
    ids = list(dict.fromkeys(c.submission_id for c in candidates))
    if len(ids) < 2:
        raise NoModelAvailable(f"a battle needs two deployed models and {len(ids)} is available right now")
    return ids


def choose_pair(
    candidates: list[RoutingCandidate],
    votes: list[CountedVote],
    rng: random.Random,
    policy: str = "active",
    new_model_boost: float = DEFAULT_BOOST,
) -> tuple[str, str]:
    """Two distinct candidates for a new battle, in random order; NoModelAvailable when fewer than two."""
    if policy not in BATTLE_POLICIES:
        raise ValueError(f"unknown battle routing policy {policy!r}; expected one of {BATTLE_POLICIES}")
    ids = _require_two(candidates)
    if policy == "uniform":
        first, second = rng.sample(ids, 2)
        return first, second
    # Votes on models that left routing still inform the others' ratings, so every model is fitted.
    table = battle_table(votes, models=ids)
    probabilities = pair_probabilities(table, new_model_boost, [table.models.index(i) for i in ids])
    a, b = rng.choices(list(probabilities), weights=list(probabilities.values()), k=1)[0]
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    return table.models[first], table.models[second]


def pair_probabilities(
    table: BattleTable, new_model_boost: float, eligible: Sequence[int], strengths: np.ndarray | None = None
) -> dict[tuple[int, int], float]:
    """The active policy's probability of each pair (a < b) of the `eligible` model indices of `table`
    (`strengths`: the table's fit, when the caller has it already)."""
    strengths = fit_strengths(table) if strengths is None else strengths
    covariance = fisher_covariance(table, strengths)
    gains = pair_gains(strengths, covariance, battles_per_model(table), new_model_boost)
    ordered = sorted(eligible)
    pairs = [(a, b) for n, a in enumerate(ordered) for b in ordered[n + 1 :]]
    total = sum(gains[a, b] for a, b in pairs)
    if not total > 0:  # nothing left to learn anywhere (or underflow): fall back to uniform
        return {pair: 1.0 / len(pairs) for pair in pairs}
    return {(a, b): float(gains[a, b] / total) for a, b in pairs}


def single_gains(
    feedback_counts: Mapping[str, tuple[int, int]], battles: Mapping[str, int], new_model_boost: float
) -> dict[str, float]:
    """Expected shrinkage of each model's thumbs-up standard error from one more feedback, boosted."""
    gains = {}
    for submission_id, (thumbs_up, total) in feedback_counts.items():
        ratio = (thumbs_up + 1) / (total + 2)
        shrinkage = np.sqrt(ratio * (1 - ratio)) * (1 / np.sqrt(total + 1) - 1 / np.sqrt(total + 2))
        evidence = total + battles.get(submission_id, 0)
        gains[submission_id] = float(shrinkage * (1.0 + new_model_boost / (1.0 + evidence)))
    return gains


def choose_single(
    candidates: list[RoutingCandidate],
    votes: list[CountedVote],
    feedback_counts: Mapping[str, tuple[int, int]],
    rng: random.Random,
    policy: str = "active",
    new_model_boost: float = DEFAULT_BOOST,
    feedback_target: int = 100,
) -> str:
    """The candidate a new single-model conversation goes to (`feedback_counts`: id → (thumbs up, total))."""
    if policy not in SINGLE_POLICIES:
        raise ValueError(f"unknown routing policy {policy!r}; expected one of {SINGLE_POLICIES}")
    if not candidates:
        raise NoModelAvailable("no model is deployed for beta users right now")
    if policy == "newest":
        weights = routing_weights(candidates, feedback_target)
    elif policy == "uniform":
        weights = {c.submission_id: 1.0 for c in candidates}
    else:
        table = battle_table(votes)
        battles = dict(zip(table.models, battles_per_model(table).tolist(), strict=True))
        counts = {c.submission_id: feedback_counts.get(c.submission_id, (0, 0)) for c in candidates}
        weights = single_gains(counts, battles, new_model_boost)
    ids = list(weights)
    return rng.choices(ids, weights=[weights[i] for i in ids], k=1)[0]
