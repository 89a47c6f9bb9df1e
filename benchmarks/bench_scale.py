"""Scale: N submissions at once through the embedded platform — time until all are deployed, per-stage
p95, none lost, and how the total grows with N.

Each submission is a distinct repository (a tiny Llama with its own seed, so every artifact differs and
nothing is reused from the S3 cache): the worst case for the pipeline. All N rows are written at once;
the submission sensor picks them up and the daemon runs at most `max_concurrent_runs` (4, dagster.yaml)
pipelines at a time, the rest queue. Rounds run one after the other on one platform (fresh home).

Memory: a vLLM CPU server holds ~2.5–3.6 GiB, and this machine has 24 GiB shared with other work. So
each model is retired (server stopped, status `inactive`) as soon as it is deployed — at most 4 servers
live at once, whatever N — and N is capped to what the available memory allows for the servers that can
be up together. The stress test per deployment is 8 requests × 4 concurrent (not the default 32 × 8),
to keep rounds bounded.

    python -m benchmarks.bench_scale [--full] [--n 1,3]
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import (
    console,
    fmt,
    fmt_ratio,
    machine_info,
    machine_line,
    parser,
    percentile,
    print_table,
    ratio,
    rounded,
    step,
    write_results,
)
from benchmarks.fixtures import (
    dagster_runs,
    embedded_platform,
    fresh_home,
    hub_serving,
    read_timeline,
    sample_model,
    submit,
    wait_for_first_sensor_tick,
)

NAME = "scale"
MAX_CONCURRENT_RUNS = 4  # dagster.yaml's QueuedRunCoordinator
SERVER_GIB = 3.6  # the top of the measured RSS range of one vLLM CPU server
HEADROOM_GIB = 3.0  # daemon, run processes, S3, this process
STAGES = ("downloading", "tensorizing", "uploading", "deploying", "stress_testing")


def memory_cap(requested: list[int]) -> tuple[list[int], str]:
    """The N values the available memory allows (servers live at once ≤ min(N, 4))."""
    import psutil

    available_gib = psutil.virtual_memory().available / 1024**3
    servers = max(1, int((available_gib - HEADROOM_GIB) // SERVER_GIB))
    if servers >= MAX_CONCURRENT_RUNS:
        return requested, (
            f"{available_gib:.1f} GiB available: up to {MAX_CONCURRENT_RUNS} servers × {SERVER_GIB} GiB "
            "at once (models are retired as soon as they are deployed), so N is not capped"
        )
    allowed = [n for n in requested if n <= servers] or [servers]
    return allowed, (
        f"only {available_gib:.1f} GiB available: at most {servers} servers at once, N capped to {allowed}"
    )


def run_round(platform: Any, n: int, seed_base: int, timeout_s: float) -> dict[str, Any]:
    """Submit n distinct tiny models at once; follow them all to a terminal status; retire each at once."""
    import psutil

    from guanaco_dagster.store.database import Store
    from guanaco_dagster.submissions.lifecycle import Status
    from guanaco_dagster.submissions.submissions import get_submission, transition

    store = Store(platform.settings.resolved_database_url)
    models = [sample_model("tiny", seed=seed_base + i) for i in range(n)]
    submitted = [submit(store, model.repo_id) for model in models]
    first_submitted_at = min(at for _, at in submitted)
    outcomes: dict[str, str] = {}
    live_servers_max, available_min_gib = 0, psutil.virtual_memory().available / 1024**3
    deployer = platform.deployer()
    deadline = time.monotonic() + timeout_s
    with step(f"N={n}: waiting for all submissions …") as status:
        while len(outcomes) < n and time.monotonic() < deadline:
            platform.check_health()
            with store.session() as session:
                states = {sid: get_submission(session, sid).status for sid, _ in submitted}
            for submission_id, state in states.items():
                if submission_id in outcomes:
                    continue
                if state == Status.DEPLOYED:
                    outcomes[submission_id] = state
                    deployer.teardown(submission_id)  # retire at once: memory stays bounded
                    with store.session() as session:
                        transition(session, submission_id, Status.INACTIVE, message="benchmark: measured")
                elif state == Status.FAILED:
                    outcomes[submission_id] = state
            live_servers_max = max(live_servers_max, len(deployer.list_submission_ids()))
            available_min_gib = min(available_min_gib, psutil.virtual_memory().available / 1024**3)
            counts = {s: list(states.values()).count(s) for s in set(states.values())}
            status.update(f"N={n}: {len(outcomes)}/{n} done — {counts}")
            time.sleep(0.5)
    ended_at = _terminal_times(store, [sid for sid, _ in submitted])
    all_done_s = (
        max((at - first_submitted_at).total_seconds() for at in ended_at.values())
        if len(ended_at) == n
        else None
    )
    submissions = []
    for submission_id, submitted_at in submitted:
        timeline = read_timeline(store, submission_id)
        runs = [r for r in dagster_runs(platform, submission_id) if r.job == "submission_pipeline"]
        run = runs[0] if runs else None
        queued_s = (
            (run.started_at - run.created_at).total_seconds() if run is not None and run.started_at else None
        )
        submissions.append(
            {
                "submission_id": submission_id,
                "status": outcomes.get(submission_id, f"lost ({timeline.status} after {timeout_s:.0f} s)"),
                "failure_reason": timeline.failure_reason,
                "offset_from_first_submission_s": (submitted_at - first_submitted_at).total_seconds(),
                "deployed_offset_s": timeline.deployed_offset_s,
                "first_stage_offset_s": timeline.first_stage_offset_s,
                "run_queued_s": queued_s,
                "stages": {stage: duration for stage, _, duration in timeline.stages},
            }
        )
    deployed = [s for s in submissions if s["status"] == Status.DEPLOYED]
    return {
        "n": n,
        "deployed": len(deployed),
        "failed": sum(1 for s in submissions if s["status"] == Status.FAILED),
        "lost": sum(1 for s in submissions if s["status"].startswith("lost")),
        "all_terminal_s": all_done_s,
        "first_deployed_s": min((s["deployed_offset_s"] for s in deployed), default=None),
        "mean_to_deployed_s": sum(s["deployed_offset_s"] for s in deployed) / len(deployed)
        if deployed
        else None,
        "p95": {
            "pickup_s": percentile([s["first_stage_offset_s"] for s in submissions], 95),
            "run_queued_s": percentile(
                [s["run_queued_s"] for s in submissions if s["run_queued_s"] is not None], 95
            ),
            **{
                f"{stage}_s": percentile(
                    [s["stages"][stage] for s in submissions if stage in s["stages"]], 95
                )
                for stage in STAGES
            },
        },
        "live_servers_max": live_servers_max,
        "available_memory_min_gib": available_min_gib,
        "submissions": submissions,
    }


def _terminal_times(store: Any, submission_ids: list[str]) -> dict[str, Any]:
    """When each submission first became `deployed` or `failed` (from its event log)."""
    from sqlalchemy import select

    from guanaco_dagster.store.models import SubmissionEvent
    from guanaco_dagster.submissions.lifecycle import Status

    ended: dict[str, Any] = {}
    with store.session() as session:
        rows = session.execute(
            select(SubmissionEvent.submission_id, SubmissionEvent.at)
            .where(SubmissionEvent.submission_id.in_(submission_ids))
            .where(SubmissionEvent.status.in_([Status.DEPLOYED, Status.FAILED]))
        )
        for submission_id, at in rows:
            ended[submission_id] = min(at, ended.get(submission_id, at))
    return ended


def print_rounds(rounds: list[dict[str, Any]]) -> None:
    """Metrics as rows, one column per N, with the growth against the smallest N."""
    base = rounds[0]
    rows = [
        ["deployed / failed / lost", *(f"{r['deployed']} / {r['failed']} / {r['lost']}" for r in rounds)],
        ["all done (s since first submission)", *(fmt(r["all_terminal_s"], 1) for r in rounds)],
        [
            f"  ÷ N={base['n']}",
            *(fmt_ratio(ratio(r["all_terminal_s"], base["all_terminal_s"])) for r in rounds),
        ],
        ["  ÷ N (s per submission)", *(fmt((r["all_terminal_s"] or 0) / r["n"], 1) for r in rounds)],
        ["first deployed (s)", *(fmt(r["first_deployed_s"], 1) for r in rounds)],
        ["mean submission → deployed (s)", *(fmt(r["mean_to_deployed_s"], 1) for r in rounds)],
        ["p95 submission → first stage (s)", *(fmt(r["p95"]["pickup_s"], 1) for r in rounds)],
        ["p95 run queued → started (s)", *(fmt(r["p95"]["run_queued_s"], 1) for r in rounds)],
        *([f"p95 {stage} (s)", *(fmt(r["p95"][f"{stage}_s"], 1) for r in rounds)] for stage in STAGES),
        ["vLLM servers live at once (max)", *(str(r["live_servers_max"]) for r in rounds)],
        ["available memory, min (GiB)", *(fmt(r["available_memory_min_gib"], 1) for r in rounds)],
    ]
    print_table(
        "Scale — N distinct tiny models submitted at once",
        ["", *(f"N = {r['n']}" for r in rounds)],
        rows,
        caption="At most 4 pipeline runs at a time (dagster.yaml). Each model is retired as soon as it is "
        "deployed (memory). Stress test 8 × 4 per deployment.",
    )
    for r in rounds:
        for s in r["submissions"]:
            if s["status"] != "deployed":
                console.print(
                    f"[red]N={r['n']} {s['submission_id']}: {s['status']} {s['failure_reason'] or ''}[/]"
                )


def run(ns: list[int], timeout_s: float) -> dict[str, Any]:
    allowed, memory_note = memory_cap(ns)
    console.print(f"[dim]memory: {memory_note}[/]")
    # Build (or find) every model first: building is not part of what is measured.
    seeds = {n: 100 + sum(allowed[:index]) for index, n in enumerate(allowed)}
    all_models = [sample_model("tiny", seed=seeds[n] + i) for n in allowed for i in range(n)]
    rounds = []
    with (
        hub_serving(all_models) as hub,
        embedded_platform(
            fresh_home(NAME), hub.endpoint, stress_requests=8, stress_concurrency=4
        ) as platform,
    ):
        wait_for_first_sensor_tick(platform)
        for n in allowed:
            rounds.append(run_round(platform, n, seeds[n], timeout_s))
    print_rounds(rounds)
    return {"memory_note": memory_note, "requested_n": ns, "n": allowed, "rounds": rounds}


def main() -> None:
    args = _parse_args()
    machine = machine_info()
    console.rule("[bold]Benchmark: N submissions at once")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    ns = [int(n) for n in (args.n or ("5,10" if args.full else "1,3")).split(",")]
    results = run(ns, args.timeout)
    settings = {
        "n": ns,
        "distinct_repositories": True,
        "stress_test": {"requests": 8, "concurrency": 4},
        "max_concurrent_runs": MAX_CONCURRENT_RUNS,
        "timeout_s": args.timeout,
        "full": args.full,
    }
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


def _parse_args() -> Any:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--n", default="", help="comma-separated submission counts (quick 1,3; full 5,10)")
    arguments.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one round")
    return arguments.parse_args()


if __name__ == "__main__":
    main()
