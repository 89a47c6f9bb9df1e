"""Arena ratings: a Bradley–Terry fit of battle votes on the Elo scale, with 95 % intervals.

Conventions (Chatbot Arena's, arXiv 2403.04132):
- P(a beats b) = 1 / (1 + 10^((R_b − R_a) / 400)); ratings are anchored so their mean is 1000.
- A tie counts as half a win for each side; "both bad" is a tie for the pair (it says nothing about which of
  the two is better, and Arena's "tie (bothbad)" is handled the same way).
- The fit is scikit-learn's logistic regression on ±1 model indicators. A weak Gaussian prior (SD 400 Elo
  per model, worth a fraction of one vote once a model has a few dozen) keeps a model that won or lost every
  battle finite and makes the ratings identifiable before the comparison graph is connected.
- Intervals are sandwich (robust) intervals clustered by user: bread = the Fisher information of the fit,
  meat = the outer products of each user's summed score (each plus the prior's information). They stay
  honest when outcomes are not Bernoulli (ties) and when one user's votes are correlated (users have
  tastes). One fit, no resampling: fast and deterministic. `benchmarks/bench_arena.py` measures their
  coverage against a known truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from guanaco_dagster.arena.config import ArenaConfig
from guanaco_dagster.arena.votes import CountedVote
from guanaco_dagster.feedback.feedback_metrics import Z_95

ELO_PER_NAT = 400 / math.log(10)
ELO_ANCHOR = 1000.0
PRIOR_SD_ELO = 400.0
# The first model's score for each outcome.
OUTCOME_SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
DEFAULT_MIN_BATTLES = ArenaConfig.model_fields["leaderboard_min_battles"].default


@dataclass(frozen=True)
class Rating:
    """A model's arena rating: Elo, its 95 % interval, battles fought and won, whether it is provisional."""

    elo: float
    ci_low: float
    ci_high: float
    battles: int
    wins: int
    provisional: bool


@dataclass(frozen=True)
class BattleTable:
    """Votes as arrays: each vote's two model indices, the first model's score (1, ½, 0) and its voter."""

    models: tuple[str, ...]
    first: np.ndarray
    second: np.ndarray
    score: np.ndarray
    voter: np.ndarray

    @property
    def size(self) -> int:
        return len(self.score)


def battle_table(votes: Sequence[CountedVote], models: Iterable[str] = ()) -> BattleTable:
    """Index `votes` over `models` plus every model they mention (in order of first appearance)."""
    names = list(dict.fromkeys([*models, *(m for v in votes for m in (v.submission_a, v.submission_b))]))
    index = {name: i for i, name in enumerate(names)}
    users: dict[str, int] = {}
    for vote in votes:
        if vote.winner not in OUTCOME_SCORES:
            raise ValueError(
                f"unknown vote outcome {vote.winner!r}; expected one of {sorted(OUTCOME_SCORES)}"
            )
        if vote.submission_a == vote.submission_b:
            raise ValueError(f"a vote compares {vote.submission_a!r} with itself")
    return BattleTable(
        models=tuple(names),
        first=np.array([index[v.submission_a] for v in votes], dtype=np.intp),
        second=np.array([index[v.submission_b] for v in votes], dtype=np.intp),
        score=np.array([OUTCOME_SCORES[v.winner] for v in votes], dtype=float),
        voter=np.array([users.setdefault(v.user_id, len(users)) for v in votes], dtype=np.intp),
    )


def _prior_variance_nats() -> float:
    return (PRIOR_SD_ELO / ELO_PER_NAT) ** 2


def fit_strengths(table: BattleTable) -> np.ndarray:
    """Bradley–Terry strengths in nats (log-odds units), mean zero, one per model of `table`."""
    count = len(table.models)
    if table.size == 0:
        return np.zeros(count)
    # Aggregate to one weighted row per pair and side: the fit then costs the same for 100 or 100,000 votes.
    low, high = np.minimum(table.first, table.second), np.maximum(table.first, table.second)
    low_score = np.where(table.first == low, table.score, 1.0 - table.score)
    pair_code = low * count + high
    codes, inverse = np.unique(pair_code, return_inverse=True)
    low_wins = np.bincount(inverse, weights=low_score, minlength=len(codes))
    high_wins = np.bincount(inverse, weights=1.0 - low_score, minlength=len(codes))
    design = np.zeros((len(codes), count))
    design[np.arange(len(codes)), codes // count] = 1.0
    design[np.arange(len(codes)), codes % count] = -1.0
    # Each vote also appears mirrored (−x, 1−y), Arena's trick: both classes are always present.
    features = np.vstack([design, design, -design, -design])
    ones, zeros = np.ones(len(codes)), np.zeros(len(codes))
    outcomes = np.concatenate([ones, zeros, zeros, ones])
    weights = np.concatenate([low_wins, high_wins, low_wins, high_wins])
    kept = weights > 0
    features, outcomes, weights = features[kept], outcomes[kept], weights[kept]
    # sklearn minimises ½‖β‖² + C·Σ w·loss; each vote counts twice (both sides): C = σ²/2 is a N(0, σ²) prior.
    model = LogisticRegression(C=_prior_variance_nats() / 2, fit_intercept=False, solver="newton-cholesky")
    model.fit(features, outcomes, sample_weight=weights)
    strengths = model.coef_[0]
    return strengths - strengths.mean()


def win_probability(strengths: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """P(first beats second) under Bradley–Terry strengths in nats."""
    return 1.0 / (1.0 + np.exp(strengths[second] - strengths[first]))


def _voters(table: BattleTable) -> int:
    return int(table.voter.max(initial=-1)) + 1


def information_by_group(
    table: BattleTable, strengths: np.ndarray, group: np.ndarray | None = None, groups: int = 1
) -> np.ndarray:
    """Σ p(1−p)·x·xᵀ over the votes of each group (`group[i]` = vote i's group; default: one group),
    the Fisher information they carry (groups × K × K)."""
    count = len(table.models)
    group = np.zeros(table.size, dtype=np.intp) if group is None else group
    p = win_probability(strengths, table.first, table.second)
    w = p * (1 - p)
    information = np.zeros((groups, count, count))
    np.add.at(information, (group, table.first, table.first), w)
    np.add.at(information, (group, table.second, table.second), w)
    np.add.at(information, (group, table.first, table.second), -w)
    np.add.at(information, (group, table.second, table.first), -w)
    return information


def score_by_voter(table: BattleTable, strengths: np.ndarray, voters: int | None = None) -> np.ndarray:
    """Each voter's gradient of the log-likelihood, Σ (score − p)·x over their votes (voters × K; `voters`
    rows when given, for voter codes beyond those in `table`)."""
    residual = table.score - win_probability(strengths, table.first, table.second)
    scores = np.zeros((_voters(table) if voters is None else voters, len(table.models)))
    np.add.at(scores, (table.voter, table.first), residual)
    np.add.at(scores, (table.voter, table.second), -residual)
    return scores


def prior_information(count: int) -> np.ndarray:
    """The prior's information on `count` strengths: I/σ²."""
    return np.eye(count) / _prior_variance_nats()


def _centred(covariance: np.ndarray) -> np.ndarray:
    """Covariance of strengths minus their mean (what the anchored ratings are)."""
    count = len(covariance)
    projection = np.eye(count) - np.full((count, count), 1.0 / count)
    return projection @ covariance @ projection


def fisher_covariance(table: BattleTable, strengths: np.ndarray) -> np.ndarray:
    """Model-based covariance of the mean-centred strengths (nats²): the inverse Fisher information."""
    information = prior_information(len(table.models)) + information_by_group(table, strengths)[0]
    return _centred(np.linalg.inv(information))


def sandwich_covariance(table: BattleTable, strengths: np.ndarray) -> np.ndarray:
    """Covariance of the mean-centred strengths (nats²), robust to ties and clustered by user."""
    prior = prior_information(len(table.models))
    bread = np.linalg.inv(prior + information_by_group(table, strengths)[0])
    user_scores = score_by_voter(table, strengths)
    clusters = len(user_scores)
    # The usual small-sample correction for clustered sandwich estimators; the prior adds its own
    # information to the meat as to the bread, so a model with one or two votes keeps a wide interval.
    correction = clusters / (clusters - 1) if clusters > 1 else 1.0
    meat = user_scores.T @ user_scores * correction + prior
    return _centred(bread @ meat @ bread)


def half_widths_elo(covariance: np.ndarray) -> np.ndarray:
    """The 95 % interval half-width of each rating, in Elo points, from a covariance in nats²."""
    return Z_95 * np.sqrt(np.clip(np.diag(covariance), 0.0, None)) * ELO_PER_NAT


def to_elo(strengths: np.ndarray) -> np.ndarray:
    """Strengths in nats → Elo points with the anchor at their mean."""
    return ELO_ANCHOR + ELO_PER_NAT * (strengths - strengths.mean())


def fit_ratings(votes: Sequence[CountedVote], min_battles: int = DEFAULT_MIN_BATTLES) -> dict[str, Rating]:
    """Every model that fought a battle in `votes`, rated; under `min_battles` battles it is provisional."""
    if min_battles < 1:
        raise ValueError(f"min_battles must be at least 1, got {min_battles}")
    table = battle_table(votes)
    if table.size == 0:
        return {}
    strengths = fit_strengths(table)
    elo = to_elo(strengths)
    half_width = half_widths_elo(sandwich_covariance(table, strengths))
    count = len(table.models)
    battles = np.bincount(table.first, minlength=count) + np.bincount(table.second, minlength=count)
    wins = np.bincount(table.first, weights=table.score == 1.0, minlength=count) + np.bincount(
        table.second, weights=table.score == 0.0, minlength=count
    )
    return {
        name: Rating(
            elo=float(elo[i]),
            ci_low=float(elo[i] - half_width[i]),
            ci_high=float(elo[i] + half_width[i]),
            battles=int(battles[i]),
            wins=int(wins[i]),
            provisional=bool(battles[i] < min_battles),
        )
        for i, name in enumerate(table.models)
    }
