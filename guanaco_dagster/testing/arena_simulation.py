"""A simulated arena with a known truth, for the ratings tests and `benchmarks/bench_arena.py`.

Models have latent Bradley–Terry strengths (Elo points). Each honest user has their own taste: a personal
offset per model (normal, `taste_sd_elo`), so the same pair can go either way between users and one user's
votes are correlated. Some votes are ties or "both bad". Bad voters are injected: `random` ones ignore the
answers, `contrarian` ones pick the weaker model (by the latent strengths) whenever they decide.

The truth a leaderboard estimates is the population's: the Bradley–Terry strengths that fit the honest
users' expected outcomes on every pair exactly (`true_elo`); with tastes and ties it is close to, but not
exactly, the latent strengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from guanaco_dagster.arena.pairing import DEFAULT_BOOST, pair_probabilities
from guanaco_dagster.arena.ratings import (
    ELO_PER_NAT,
    BattleTable,
    battle_table,
    fit_strengths,
    half_widths_elo,
    sandwich_covariance,
    to_elo,
)
from guanaco_dagster.arena.votes import CountedVote

USER_KINDS = ("honest", "random", "contrarian")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ArenaWorld:
    """Models with latent strengths, users with tastes and kinds, and how often votes are not decisive."""

    models: tuple[str, ...]
    strengths_elo: np.ndarray
    user_ids: tuple[str, ...]
    user_kinds: tuple[str, ...]
    tastes_elo: np.ndarray  # users × models
    tie_rate: float
    both_bad_rate: float
    thumbs_up_offset: float  # log-odds of a thumbs-up for a model of strength 0

    def honest_users(self) -> np.ndarray:
        return np.array([kind == "honest" for kind in self.user_kinds])


def make_world(
    rng: np.random.Generator,
    models: int = 6,
    spread_elo: float = 300.0,
    users: int = 200,
    taste_sd_elo: float = 40.0,
    random_voters: int = 0,
    contrarians: int = 0,
    tie_rate: float = 0.1,
    both_bad_rate: float = 0.05,
) -> ArenaWorld:
    """Models evenly spread over `spread_elo` (in a random order), `users` honest users plus bad voters."""
    strengths = np.linspace(-spread_elo / 2, spread_elo / 2, models)
    rng.shuffle(strengths)
    kinds = ("honest",) * users + ("random",) * random_voters + ("contrarian",) * contrarians
    return ArenaWorld(
        models=tuple(f"model-{i}" for i in range(models)),
        strengths_elo=strengths,
        user_ids=tuple(f"user-{i:04d}" for i in range(len(kinds))),
        user_kinds=kinds,
        tastes_elo=rng.normal(0.0, taste_sd_elo, size=(len(kinds), models)),
        tie_rate=tie_rate,
        both_bad_rate=both_bad_rate,
        thumbs_up_offset=0.3,
    )


def _decisive_first_wins(world: ArenaWorld, users: np.ndarray, first: np.ndarray, second: np.ndarray):
    """P(first preferred) for each (user, first, second) among honest tastes."""
    gap = (
        world.strengths_elo[first]
        + world.tastes_elo[users, first]
        - world.strengths_elo[second]
        - world.tastes_elo[users, second]
    )
    return 1.0 / (1.0 + np.exp(-gap / ELO_PER_NAT))


def simulate_votes(
    world: ArenaWorld,
    pairs: Sequence[tuple[int, int]],
    rng: np.random.Generator,
    voters: np.ndarray | None = None,
) -> list[CountedVote]:
    """One vote per pair (model indices), each by a user drawn uniformly (or the given `voters` indices)."""
    if not len(pairs):
        return []
    pair_array = np.asarray(pairs)
    first, second = pair_array[:, 0], pair_array[:, 1]
    users = rng.integers(0, len(world.user_ids), size=len(first)) if voters is None else np.asarray(voters)
    first_wins = _decisive_first_wins(world, users, first, second)
    kinds = np.array(world.user_kinds)[users]
    first_wins = np.where(kinds == "random", 0.5, first_wins)
    stronger_first = world.strengths_elo[first] > world.strengths_elo[second]
    first_wins = np.where(kinds == "contrarian", np.where(stronger_first, 0.0, 1.0), first_wins)
    draw = rng.random(len(first))
    tie = draw < world.tie_rate
    both_bad = (draw >= world.tie_rate) & (draw < world.tie_rate + world.both_bad_rate)
    first_won = rng.random(len(first)) < first_wins
    winners = np.where(tie, "tie", np.where(both_bad, "both_bad", np.where(first_won, "a", "b")))
    return [
        CountedVote(
            submission_a=world.models[a],
            submission_b=world.models[b],
            winner=str(winner),
            user_id=world.user_ids[user],
            created_at=EPOCH + timedelta(seconds=index),
        )
        for index, (a, b, winner, user) in enumerate(zip(first, second, winners, users, strict=True))
    ]


def uniform_pairs(models: int, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """`count` pairs of distinct model indices, every pair equally likely."""
    first = rng.integers(0, models, size=count)
    second = (first + rng.integers(1, models, size=count)) % models
    return list(zip(first.tolist(), second.tolist(), strict=True))


def true_elo(world: ArenaWorld, pseudo_votes_per_pair: int = 1_000) -> np.ndarray:
    """The honest population's Bradley–Terry ratings (Elo, mean 1000), fitted to its expected outcomes."""
    honest = np.flatnonzero(world.honest_users())
    count = len(world.models)
    pairs = [(a, b) for a in range(count) for b in range(a + 1, count)]
    first = np.array([a for a, _ in pairs])
    second = np.array([b for _, b in pairs])
    decisive = _decisive_first_wins(world, honest[:, None], first[None, :], second[None, :]).mean(axis=0)
    undecided = world.tie_rate + world.both_bad_rate
    expected = (1 - undecided) * decisive + undecided * 0.5
    # Fractional scores are fine for the fit; the prior's pull is negligible against this many pseudo-votes.
    table = BattleTable(
        models=world.models,
        first=np.repeat(first, pseudo_votes_per_pair),
        second=np.repeat(second, pseudo_votes_per_pair),
        score=np.repeat(expected, pseudo_votes_per_pair),
        voter=np.zeros(len(pairs) * pseudo_votes_per_pair, dtype=np.intp),
    )
    return to_elo(fit_strengths(table))


def true_thumbs_up_rates(world: ArenaWorld) -> np.ndarray:
    """Each model's share of thumbs-up among honest users (the truth a Wilson interval should cover)."""
    honest = world.honest_users()
    logits = world.thumbs_up_offset + (world.strengths_elo + world.tastes_elo[honest]) / ELO_PER_NAT
    return (1.0 / (1.0 + np.exp(-logits))).mean(axis=0)


def simulate_thumbs(world: ArenaWorld, model: int, count: int, rng: np.random.Generator) -> int:
    """Thumbs-up out of `count` single conversations with `model`, each with a random honest user."""
    honest = np.flatnonzero(world.honest_users())
    users = rng.choice(honest, size=count)
    logits = (
        world.thumbs_up_offset + (world.strengths_elo[model] + world.tastes_elo[users, model]) / ELO_PER_NAT
    )
    return int((rng.random(count) < 1.0 / (1.0 + np.exp(-logits))).sum())


def votes_until_precise(
    world: ArenaWorld,
    policy: str,
    rng: np.random.Generator,
    target_half_width_elo: float,
    earlier_votes: Sequence[CountedVote] = (),
    batch: int = 50,
    new_model_boost: float = DEFAULT_BOOST,
    max_votes: int = 50_000,
) -> int:
    """New votes, pairs chosen by `policy` ("active" or "uniform"), until every model's 95 % interval
    half-width is at most the target (counted in batches: the ratings are refitted once per batch)."""
    votes = list(earlier_votes)
    count = len(world.models)
    added = 0
    while added < max_votes:
        table = battle_table(votes, models=world.models)
        strengths = fit_strengths(table)
        if (
            table.size
            and half_widths_elo(sandwich_covariance(table, strengths)).max() <= target_half_width_elo
        ):
            return added
        if policy == "uniform":
            pairs = uniform_pairs(count, batch, rng)
        else:
            probabilities = pair_probabilities(table, new_model_boost, range(count), strengths)
            keys = list(probabilities)
            chosen = rng.choice(len(keys), size=batch, p=np.array(list(probabilities.values())))
            pairs = [keys[i] if rng.random() < 0.5 else keys[i][::-1] for i in chosen]
        votes += simulate_votes(world, pairs, rng)
        added += batch
    raise RuntimeError(
        f"{policy} routing did not reach ±{target_half_width_elo} Elo within {max_votes} votes"
    )
