"""Arena ratings against a simulated truth: active vs uniform pairing, interval coverage, rank, anomalies.

Every number comes from `guanaco_dagster.testing.arena_simulation`: models with latent Bradley–Terry
strengths, honest users with their own tastes (a per-model offset, SD 40 Elo), 10 % ties and 5 % "both bad",
and injected bad voters (random ones and contrarians who always pick the weaker model). The truth a
leaderboard estimates is the honest population's Bradley–Terry fit to its exact expected outcomes.

(a) votes until every model's 95 % half-width ≤ a target, active vs uniform pairing, in two scenarios: a
    cold start (every model new) and a newcomer joining a settled leaderboard;
(b) coverage of the 95 % Bradley–Terry intervals (sandwich, clustered by user; the model-based Fisher
    interval beside it) and of the Wilson thumbs-up interval, over ≥ 200 simulated leaderboards;
(c) Spearman rank correlation with the truth after N votes, with bad voters, before and after excluding
    the users the anomaly filter flags;
(d) the anomaly filter's true-positive rate (per kind of bad voter) and true-negative rate;
and how long `fit_ratings` and `anomaly_scores` take.

    python -m benchmarks.bench_arena [--full]
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from benchmarks.common import (
    console,
    fmt,
    machine_info,
    machine_line,
    parser,
    print_table,
    rounded,
    step,
    timed,
    write_results,
)
from guanaco_dagster.arena.anomaly import DEFAULT_MIN_VOTES, DEFAULT_THRESHOLD, anomaly_scores, flagged_users
from guanaco_dagster.arena.ratings import (
    battle_table,
    fisher_covariance,
    fit_ratings,
    fit_strengths,
    half_widths_elo,
    to_elo,
)
from guanaco_dagster.feedback.feedback_metrics import wilson_interval
from guanaco_dagster.testing.arena_simulation import (
    make_world,
    simulate_thumbs,
    simulate_votes,
    true_elo,
    true_thumbs_up_rates,
    uniform_pairs,
    votes_until_precise,
)

NAME = "arena"
QUICK = {
    "precision_runs": 5,
    "coverage_leaderboards": 200,
    "rank_leaderboards": 10,
    "anomaly_worlds": 3,
    "timing_samples": 5,
}
FULL = {
    "precision_runs": 15,
    "coverage_leaderboards": 500,
    "rank_leaderboards": 30,
    "anomaly_worlds": 8,
    "timing_samples": 9,
}
MODELS, SPREAD_ELO, USERS = 6, 300.0, 100
COLD_TARGET_ELO, NEWCOMER_TARGET_ELO, BATCH = 25.0, 30.0, 50
SETTLED_VOTES = 3000
COVERAGE_VOTES, THUMBS_PER_MODEL = 1000, 50
RANK_MODELS, RANK_VOTES = 10, (500, 1000, 2000, 5000)
ANOMALY_THRESHOLDS = (1.64, 2.33, 3.0, 3.5)
BAD_VOTERS = {"random": 10, "contrarian": 10}
VOTES_PER_USER = 40


def precision_runs(runs: int) -> dict[str, Any]:
    """(a) Votes to reach the interval target, per policy and scenario (same worlds for both policies)."""
    results: dict[str, Any] = {}
    for scenario in ("cold_start", "newcomer"):
        needed: dict[str, list[int]] = {"active": [], "uniform": []}
        for run in range(runs):
            world = make_world(np.random.default_rng(1000 + run), models=MODELS, spread_elo=SPREAD_ELO)
            settled = []
            target = COLD_TARGET_ELO
            if scenario == "newcomer":  # the last model arrives after the others have SETTLED_VOTES votes
                rng = np.random.default_rng(2000 + run)
                settled = simulate_votes(world, uniform_pairs(MODELS - 1, SETTLED_VOTES, rng), rng)
                target = NEWCOMER_TARGET_ELO
            for policy in needed:
                rng = np.random.default_rng(3000 + run)
                needed[policy].append(votes_until_precise(world, policy, rng, target, settled, batch=BATCH))
        medians = {policy: statistics.median(values) for policy, values in needed.items()}
        results[scenario] = {
            "target_half_width_elo": target,
            "votes": needed,
            "median_votes": medians,
            "min_votes": {policy: min(values) for policy, values in needed.items()},
            "active_over_uniform": medians["active"] / medians["uniform"],
        }
    return results


def coverage(leaderboards: int) -> dict[str, Any]:
    """(b) Share of 95 % intervals that hold the truth: Bradley–Terry (sandwich, Fisher) and Wilson."""
    rng = np.random.default_rng(42)
    sandwich, fisher, thumbs = [], [], []
    for _ in range(leaderboards):
        world = make_world(rng, models=MODELS, spread_elo=SPREAD_ELO, users=USERS)
        truth = true_elo(world)
        votes = simulate_votes(world, uniform_pairs(MODELS, COVERAGE_VOTES, rng), rng)
        ratings = fit_ratings(votes)
        sandwich += [
            ratings[m].ci_low <= t <= ratings[m].ci_high for m, t in zip(world.models, truth, strict=True)
        ]
        table = battle_table(votes, models=world.models)
        strengths = fit_strengths(table)
        fisher += list(
            np.abs(to_elo(strengths) - truth) <= half_widths_elo(fisher_covariance(table, strengths))
        )
        rates = true_thumbs_up_rates(world)
        for model, rate in enumerate(rates):
            low, high = wilson_interval(
                simulate_thumbs(world, model, THUMBS_PER_MODEL, rng), THUMBS_PER_MODEL
            )
            thumbs.append(low <= rate <= high)
    return {
        "leaderboards": leaderboards,
        "intervals_each": leaderboards * MODELS,
        "bt_sandwich": float(np.mean(sandwich)),
        "bt_fisher": float(np.mean(fisher)),
        "thumbs_wilson": float(np.mean(thumbs)),
    }


def _world_with_bad_voters(rng: np.random.Generator):
    world = make_world(rng, models=MODELS, spread_elo=SPREAD_ELO, users=USERS, **_bad_voter_counts())
    voters = np.repeat(np.arange(len(world.user_ids)), VOTES_PER_USER)
    rng.shuffle(voters)
    return world, voters


def _bad_voter_counts() -> dict[str, int]:
    return {"random_voters": BAD_VOTERS["random"], "contrarians": BAD_VOTERS["contrarian"]}


def _accuracy(votes: list, world, truth: np.ndarray) -> tuple[float, float]:
    """(Spearman ρ with the true ratings, mean |Elo − true Elo|) of the leaderboard `votes` make."""
    ratings = fit_ratings(votes)
    elo = np.array([ratings[m].elo for m in world.models])
    return float(spearmanr(elo, truth).statistic), float(np.mean(np.abs(elo - truth)))


def rank_correlation(leaderboards: int) -> dict[str, Any]:
    """(c) Spearman ρ and Elo error after N votes: honest users only, with bad voters, and filtered."""
    rng = np.random.default_rng(7)
    kinds = ("honest", "with_bad", "filtered")
    rows = {n: {kind: [] for kind in kinds} for n in RANK_VOTES}
    for _ in range(leaderboards):
        world = make_world(rng, models=RANK_MODELS, spread_elo=SPREAD_ELO, users=USERS, **_bad_voter_counts())
        truth = true_elo(world)
        honest_users = np.flatnonzero(world.honest_users())
        for n in RANK_VOTES:
            honest_voters = rng.choice(honest_users, size=n)
            honest = simulate_votes(world, uniform_pairs(RANK_MODELS, n, rng), rng, voters=honest_voters)
            mixed = simulate_votes(world, uniform_pairs(RANK_MODELS, n, rng), rng)
            flagged = flagged_users(mixed)
            kept = [vote for vote in mixed if vote.user_id not in flagged]
            for kind, votes in zip(kinds, (honest, mixed, kept), strict=True):
                rows[n][kind].append(_accuracy(votes, world, truth))
    return {
        str(n): {
            kind: {
                "spearman": float(np.mean([a[0] for a in values])),
                "elo_error": float(np.mean([a[1] for a in values])),
            }
            for kind, values in row.items()
        }
        for n, row in rows.items()
    }


def anomaly_rates(worlds: int) -> dict[str, Any]:
    """(d) Flagged share of each kind of voter at several thresholds (TP for bad voters, TN for honest)."""
    rng = np.random.default_rng(99)
    scores_by_kind: dict[str, list[float]] = {"honest": [], "random": [], "contrarian": []}
    for _ in range(worlds):
        world, voters = _world_with_bad_voters(rng)
        votes = simulate_votes(world, uniform_pairs(MODELS, len(voters), rng), rng, voters=voters)
        scores = anomaly_scores(votes)
        for user, kind in zip(world.user_ids, world.user_kinds, strict=True):
            scores_by_kind[kind].append(scores.get(user, 0.0))
    by_threshold = {}
    for threshold in ANOMALY_THRESHOLDS:
        flagged = {kind: np.array(values) >= threshold for kind, values in scores_by_kind.items()}
        by_threshold[str(threshold)] = {
            "contrarian_flagged": float(flagged["contrarian"].mean()),
            "random_flagged": float(flagged["random"].mean()),
            "true_positive_rate": float(np.concatenate([flagged["contrarian"], flagged["random"]]).mean()),
            "true_negative_rate": float(1.0 - flagged["honest"].mean()),
        }
    return {
        "users_per_world": {"honest": USERS, **BAD_VOTERS},
        "votes_per_user": VOTES_PER_USER,
        "min_votes": DEFAULT_MIN_VOTES,
        "default_threshold": DEFAULT_THRESHOLD,
        "by_threshold": by_threshold,
        "true_positive_rate": by_threshold[str(DEFAULT_THRESHOLD)]["true_positive_rate"],
        "true_negative_rate": by_threshold[str(DEFAULT_THRESHOLD)]["true_negative_rate"],
    }


def timings(samples: int) -> dict[str, Any]:
    """Seconds for `fit_ratings` (5 models × 2,000 votes) and `anomaly_scores` (6 models, 120 users)."""
    rng = np.random.default_rng(5)
    world = make_world(rng, models=5, users=100)
    votes = simulate_votes(world, uniform_pairs(5, 2000, rng), rng)
    fit_s = [timed(lambda: fit_ratings(votes))[1] for _ in range(samples)]
    world, voters = _world_with_bad_voters(rng)
    mixed = simulate_votes(world, uniform_pairs(MODELS, len(voters), rng), rng, voters=voters)
    anomaly_s = [timed(lambda: anomaly_scores(mixed))[1] for _ in range(samples)]
    return {
        "fit_ratings_5x2000_min_s": min(fit_s),
        "fit_ratings_5x2000_median_s": statistics.median(fit_s),
        "fit_ratings_samples_s": fit_s,
        "anomaly_scores_votes": len(mixed),
        "anomaly_scores_min_s": min(anomaly_s),
        "anomaly_scores_median_s": statistics.median(anomaly_s),
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    preset = FULL if args.full else QUICK
    machine = machine_info()
    console.rule("[bold]Benchmark: arena ratings against a simulated truth")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    with step(f"(a) votes to ±{COLD_TARGET_ELO:.0f} / ±{NEWCOMER_TARGET_ELO:.0f} Elo, active vs uniform …"):
        precision = precision_runs(preset["precision_runs"])
    with step(f"(b) coverage over {preset['coverage_leaderboards']} simulated leaderboards …"):
        covered = coverage(preset["coverage_leaderboards"])
    with step("(c) rank correlation after N votes …"):
        ranks = rank_correlation(preset["rank_leaderboards"])
    with step("(d) anomaly filter against injected bad voters …"):
        anomalies = anomaly_rates(preset["anomaly_worlds"])
    with step("timing fit_ratings and anomaly_scores …"):
        timing = timings(preset["timing_samples"])

    print_table(
        f"(a) Votes until every model's 95 % half-width ≤ target ({MODELS} models over {SPREAD_ELO:.0f} Elo, "
        f"{preset['precision_runs']} runs each, refit every {BATCH} votes)",
        [
            "scenario",
            "target",
            "uniform median",
            "uniform min",
            "active median",
            "active min",
            "active / uniform",
        ],
        [
            [
                scenario.replace("_", " "),
                f"±{numbers['target_half_width_elo']:.0f} Elo",
                fmt(numbers["median_votes"]["uniform"], 0),
                numbers["min_votes"]["uniform"],
                fmt(numbers["median_votes"]["active"], 0),
                numbers["min_votes"]["active"],
                fmt(numbers["active_over_uniform"], 2),
            ]
            for scenario, numbers in precision.items()
        ],
        caption=f"newcomer: {MODELS - 1} models settled on {SETTLED_VOTES} votes, then a new one arrives "
        "(votes counted from its arrival); goal ≤ 0.65 (Arena: 6,800 → 4,400)",
    )
    print_table(
        f"(b) Coverage of 95 % intervals over {covered['leaderboards']} simulated leaderboards "
        f"({covered['intervals_each']} intervals each)",
        ["interval", "coverage", "goal"],
        [
            [
                "Bradley–Terry, sandwich clustered by user (shipped)",
                fmt(covered["bt_sandwich"], 3),
                "0.93–0.97",
            ],
            ["Bradley–Terry, model-based (Fisher)", fmt(covered["bt_fisher"], 3), "0.93–0.97"],
            [
                f"thumbs-up ratio, Wilson ({THUMBS_PER_MODEL} per model)",
                fmt(covered["thumbs_wilson"], 3),
                "≈ 0.95",
            ],
        ],
        caption=f"{COVERAGE_VOTES} votes per leaderboard, {USERS} users with tastes, 15 % ties/both bad",
    )
    print_table(
        f"(c) Accuracy after N votes ({preset['rank_leaderboards']} leaderboards, {RANK_MODELS} models over "
        f"{SPREAD_ELO:.0f} Elo): Spearman ρ with the true ranking / mean |Elo error|",
        ["votes", "honest users only", "with bad voters", "flagged users removed"],
        [
            [
                n,
                *(
                    f"{r[kind]['spearman']:.3f} / {r[kind]['elo_error']:.1f}"
                    for kind in ("honest", "with_bad", "filtered")
                ),
            ]
            for n, r in ranks.items()
        ],
        caption=f"bad voters: {BAD_VOTERS['random']} random and {BAD_VOTERS['contrarian']} contrarian among "
        f"{USERS} honest users (17 % of votes); a user is judged from {DEFAULT_MIN_VOTES} decisive votes on",
    )
    print_table(
        f"(d) Anomaly filter against injected bad voters ({preset['anomaly_worlds']} worlds, "
        f"{VOTES_PER_USER} votes per user, judged from {DEFAULT_MIN_VOTES} decisive votes)",
        ["score threshold", "contrarians flagged", "random voters flagged", "TP (all bad)", "TN (honest)"],
        [
            [
                f"{threshold}{' (default)' if float(threshold) == DEFAULT_THRESHOLD else ''}",
                fmt(rates["contrarian_flagged"], 3),
                fmt(rates["random_flagged"], 3),
                fmt(rates["true_positive_rate"], 3),
                fmt(rates["true_negative_rate"], 3),
            ]
            for threshold, rates in anomalies["by_threshold"].items()
        ],
        caption="Arena's detector: ~0.90 TP, 0.60–0.70 TN",
    )
    print_table(
        f"Timing ({preset['timing_samples']} samples)",
        ["call", "min", "median"],
        [
            [
                "fit_ratings, 5 models × 2,000 votes",
                fmt(timing["fit_ratings_5x2000_min_s"], 3, " s"),
                fmt(timing["fit_ratings_5x2000_median_s"], 3, " s"),
            ],
            [
                f"anomaly_scores, {timing['anomaly_scores_votes']} votes, 120 users",
                fmt(timing["anomaly_scores_min_s"], 3, " s"),
                fmt(timing["anomaly_scores_median_s"], 3, " s"),
            ],
        ],
    )
    results = {
        "votes_active_over_uniform": precision["cold_start"]["active_over_uniform"],
        "votes_active_over_uniform_newcomer": precision["newcomer"]["active_over_uniform"],
        "bt_interval_coverage": covered["bt_sandwich"],
        "thumbs_interval_coverage": covered["thumbs_wilson"],
        "precision": precision,
        "coverage": covered,
        "spearman": ranks,
        "anomaly": anomalies,
        "timing": timing,
    }
    settings = {
        **preset,
        "models": MODELS,
        "spread_elo": SPREAD_ELO,
        "users": USERS,
        "batch": BATCH,
        "coverage_votes": COVERAGE_VOTES,
        "thumbs_per_model": THUMBS_PER_MODEL,
        "rank_votes": RANK_VOTES,
        "bad_voters": BAD_VOTERS,
    }
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


if __name__ == "__main__":
    main()
