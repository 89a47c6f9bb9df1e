"""Anomalous voters: users whose votes disagree with everyone else's far beyond chance.

For each user: fit Bradley–Terry on everyone else's votes (leave one user out, so a prolific voter cannot
pull the consensus towards themselves: `leave_one_voter_out`), and let q_i be the probability consensus
gives the choice the user made in their i-th decisive vote. Ties and "both bad" are left out, since they do
not say which model the user preferred, and q_i is corrected for their share (`decisive_probability`).
The test is a one-parameter likelihood ratio:

    H0: the user chooses like the consensus:             P(choice_i) = q_i
    H1: the user flips the consensus a share λ of times: P(choice_i) = (1 − λ)·q_i + λ·(1 − q_i), λ ∈ [0, 1]

λ = ½ is a voter who ignores the answers (random), λ = 1 one who votes against them (adversarial). With
LR = 2·(ℓ(λ̂) − ℓ(0)), the null distribution is ½·χ²₀ + ½·χ²₁ (λ = 0 is on the boundary), so the score
√LR (0 when λ̂ = 0) reads like a one-sided z: P(score > 3 | honest voter) ≈ 0.13 %. Honest users with their
own tastes disagree sometimes; only disagreement beyond what the consensus probabilities allow scores high.
Users with fewer than `min_votes` decisive votes are not judged (no score, never flagged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from guanaco_dagster.arena.config import ArenaConfig
from guanaco_dagster.arena.ratings import (
    BattleTable,
    battle_table,
    fit_strengths,
    information_by_group,
    prior_information,
    score_by_voter,
    win_probability,
)
from guanaco_dagster.arena.votes import CountedVote

DEFAULT_THRESHOLD = ArenaConfig.model_fields["anomaly_threshold"].default
DEFAULT_MIN_VOTES = ArenaConfig.model_fields["anomaly_min_votes"].default


def disagreement_score(consensus_probabilities: np.ndarray) -> float:
    """√LR of "flips the consensus a share λ of the time" against "follows it", given q_i for each choice."""
    q = np.clip(consensus_probabilities, 1e-9, 1 - 1e-9)
    # ℓ(λ) is concave; if it falls from λ = 0 the best λ is 0 and there is no evidence of disagreement.
    if np.sum((1 - 2 * q) / q) <= 0:
        return 0.0

    def negative_log_likelihood(share: float) -> float:
        return -float(np.sum(np.log((1 - share) * q + share * (1 - q))))

    best = minimize_scalar(
        negative_log_likelihood, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-6}
    )
    ratio = 2 * (negative_log_likelihood(0.0) - min(best.fun, negative_log_likelihood(1.0)))
    return math.sqrt(max(ratio, 0.0))


def leave_one_voter_out(table: BattleTable, strengths: np.ndarray, voters: np.ndarray) -> np.ndarray:
    """Strengths fitted without each of `voters`' votes (rows, in that order), mean-centred.

    One Newton step from the full fit: the full fit's gradient without voter u's votes is −g_u, so
    β₋ᵤ ≈ β − (H − H_u)⁻¹·g_u. Exact for a quadratic log-likelihood; off by O(u's share of the votes²)
    otherwise, far below the noise the test allows for.
    """
    count = len(table.models)
    codes = max(int(table.voter.max(initial=-1)), int(voters.max(initial=-1))) + 1
    slot = np.full(codes, len(voters), dtype=np.intp)
    slot[voters] = np.arange(len(voters))
    # One group per judged voter, plus one for everyone else.
    information = information_by_group(table, strengths, slot[table.voter], len(voters) + 1)
    total = prior_information(count) + information.sum(axis=0)
    gradients = score_by_voter(table, strengths, codes)[voters]
    steps = np.linalg.solve(total[None, :, :] - information[: len(voters)], gradients[:, :, None])[:, :, 0]
    refitted = strengths[None, :] - steps
    return refitted - refitted.mean(axis=1, keepdims=True)


def decisive_probability(first_wins: np.ndarray, undecided_share: float) -> np.ndarray:
    """P(first preferred | the vote was decisive), from the fit's P(first wins) that counts ties as halves.

    With a share t of ties and "both bad" votes, p_fit = (1 − t)·p_decisive + t/2; without this step the
    consensus would look less sure than it is and honest voters would seem to agree with it beyond chance.
    """
    if undecided_share >= 1.0:
        return np.full_like(first_wins, 0.5)
    return np.clip((first_wins - undecided_share / 2) / (1 - undecided_share), 1e-6, 1 - 1e-6)


def _consensus_scores(
    table: BattleTable, judged: np.ndarray, excluded: np.ndarray, undecided_share: float
) -> np.ndarray:
    """Each judged voter's score against the consensus of everyone else, minus the `excluded` voters."""
    decisive = table.score != 0.5
    kept = ~np.isin(table.voter, excluded)
    consensus_table = BattleTable(
        table.models, table.first[kept], table.second[kept], table.score[kept], table.voter[kept]
    )
    strengths = fit_strengths(consensus_table)
    # Excluded voters are already out of the consensus; everyone else is left out of their own.
    inside = judged[~np.isin(judged, excluded)]
    left_out = dict(
        zip(inside.tolist(), leave_one_voter_out(consensus_table, strengths, inside), strict=True)
    )
    scores = np.zeros(len(judged))
    for row, code in enumerate(judged):
        mine = (table.voter == code) & decisive
        first_wins = decisive_probability(
            win_probability(left_out.get(int(code), strengths), table.first[mine], table.second[mine]),
            undecided_share,
        )
        scores[row] = disagreement_score(np.where(table.score[mine] == 1.0, first_wins, 1.0 - first_wins))
    return scores


def anomaly_scores(
    votes: Sequence[CountedVote],
    min_votes: int = DEFAULT_MIN_VOTES,
    exclude_above: float = DEFAULT_THRESHOLD,
) -> dict[str, float]:
    """Each user with at least `min_votes` decisive votes → how far they disagree with consensus (≈ z).

    Two rounds: voters scoring `exclude_above` or more in the first are left out of the consensus in the
    second, since a block of contrarian votes pulls the consensus towards a coin flip and hides other bad
    voters (and makes honest ones look more agreeable than they are).
    """
    table = battle_table(votes)
    user_ids = list(dict.fromkeys(v.user_id for v in votes))  # battle_table numbers voters in this order
    decisive = table.score != 0.5
    judged = np.flatnonzero(np.bincount(table.voter[decisive], minlength=len(user_ids)) >= min_votes)
    if not len(judged):
        return {}
    undecided_share = float(np.mean(~decisive))
    scores = _consensus_scores(table, judged, np.array([], dtype=np.intp), undecided_share)
    suspects = judged[scores >= exclude_above]
    if len(suspects):
        scores = _consensus_scores(table, judged, suspects, undecided_share)
    return {user_ids[code]: float(score) for code, score in zip(judged, scores, strict=True)}


def flagged_users(
    votes: Sequence[CountedVote], threshold: float = DEFAULT_THRESHOLD, min_votes: int = DEFAULT_MIN_VOTES
) -> dict[str, float]:
    """Users scoring `threshold` or more, with their scores: their votes should not count."""
    return {user: score for user, score in anomaly_scores(votes, min_votes).items() if score >= threshold}
