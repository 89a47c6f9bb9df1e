"""Live-model capacity: how many sample models this machine keeps deployed at once, each within the SLO.

Through the embedded platform (defaults: SQLite, local deployer): distinct tiny models are submitted one
after the other and **kept up**. After each new deployment every live model takes a short stress test at
the same time (all servers busy together, as under real beta traffic), held to the platform's SLO; the
new server's memory (PSS of its whole process tree) and the machine's available memory are recorded.
It stops when a deployment fails, a live model misses the SLO, available memory falls under the
headroom, or `--max` models are live. Capacity = the most live models that all met the SLO.

    python -m benchmarks.bench_capacity [--max 16] [--headroom-gib 1.5]
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.common import (
    console,
    fmt,
    machine_info,
    machine_line,
    parser,
    print_table,
    rounded,
    step,
    write_results,
)
from benchmarks.fixtures import (
    embedded_platform,
    fresh_home,
    hub_serving,
    sample_model,
    server_pss_bytes,
    submit,
    wait_for_first_sensor_tick,
)

NAME = "capacity"
GIB = 1024**3
# Each live model's share of the load after every deployment: small, so the test measures capacity,
# not how long one stress test takes.
PROBE = {"stress_requests": 4, "stress_concurrency": 2, "stress_max_tokens": 16}


def probe_all(endpoints: dict[str, tuple[str, str]], settings: Any) -> dict[str, Any]:
    """Stress every live model at the same time; each one's p95 and SLO verdict."""
    from guanaco_dagster.stages.stress import StressConfig, evaluate_slo, run_stress_test

    config = StressConfig(**PROBE, stress_timeout_s=settings.stress_timeout_s)

    def probe(item: tuple[str, tuple[str, str]]) -> tuple[str, Any]:
        submission_id, (endpoint_url, served_name) = item
        return submission_id, run_stress_test(endpoint_url, served_name, config)

    with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
        reports = dict(pool.map(probe, endpoints.items()))
    verdicts = {sid: evaluate_slo(report, settings) for sid, report in reports.items()}
    return {
        "latency_p95_s": max(report.latency_p95_s for report in reports.values()),
        "ttft_p95_s": max(report.ttft_p95_s for report in reports.values()),
        "all_within_slo": all(v.passed for v in verdicts.values()),
        "violations": {sid: v.reason() for sid, v in verdicts.items() if not v.passed},
    }


def run(max_models: int, headroom_gib: float, timeout_s: float) -> dict[str, Any]:
    """Deploy models one by one, keeping them up, until something gives out."""
    import psutil

    from guanaco_dagster.store.database import Store
    from guanaco_dagster.submissions.lifecycle import Status
    from guanaco_dagster.submissions.submissions import get_submission
    from guanaco_dagster.testing.watch import wait_for_outcome

    models = [sample_model("tiny", seed=100 + index) for index in range(max_models)]
    steps: list[dict[str, Any]] = []
    stopped_because = f"reached --max {max_models}"
    with hub_serving(models) as hub, embedded_platform(fresh_home(NAME), hub.endpoint) as platform:
        wait_for_first_sensor_tick(platform)
        store = Store(platform.settings.resolved_database_url)
        endpoints: dict[str, tuple[str, str]] = {}
        for model in models:
            available = psutil.virtual_memory().available / GIB
            if available < headroom_gib:
                stopped_because = f"{available:.1f} GiB available < {headroom_gib} GiB headroom"
                break
            submission_id, _ = submit(store, model.repo_id)
            started = time.perf_counter()
            with step(
                f"model {len(endpoints) + 1}: {submission_id} deploying beside {len(endpoints)} live …"
            ):
                status = wait_for_outcome(store, submission_id, timeout_s, health_check=platform.check_health)
            deploy_s = time.perf_counter() - started
            with store.session() as session:
                submission = get_submission(session, submission_id)
                reason, endpoint, served = (
                    submission.failure_reason,
                    submission.endpoint_url,
                    submission.served_model_name,
                )
            if status != Status.DEPLOYED:
                stopped_because = f"model {len(endpoints) + 1} failed: {reason}"
                break
            endpoints[submission_id] = (endpoint, served)
            with step(f"{len(endpoints)} live: every model stress-tested at once …"):
                probe = probe_all(endpoints, platform.settings)
            steps.append(
                {
                    "live_models": len(endpoints),
                    "deploy_s": deploy_s,
                    "server_pss_gib": server_pss_bytes(endpoint) / GIB,
                    "available_gib": psutil.virtual_memory().available / GIB,
                    **probe,
                }
            )
            if not probe["all_within_slo"]:
                stopped_because = f"{len(endpoints)} live: SLO missed ({probe['violations']})"
                break
    capacity = max((s["live_models"] for s in steps if s["all_within_slo"]), default=0)
    print_table(
        f"Live-model capacity: {capacity} models within the SLO (stopped: {stopped_because})",
        ["live", "deploy s", "new server PSS GiB", "available GiB", "p95 s (worst model)", "SLO"],
        [
            [
                s["live_models"],
                fmt(s["deploy_s"], 1),
                fmt(s["server_pss_gib"], 2),
                fmt(s["available_gib"], 1),
                fmt(s["latency_p95_s"], 2),
                "met" if s["all_within_slo"] else "missed",
            ]
            for s in steps
        ],
    )
    return {"capacity": capacity, "stopped_because": stopped_because, "probe": PROBE, "steps": steps}


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--max", type=int, default=16, help="stop after this many live models")
    arguments.add_argument("--headroom-gib", type=float, default=1.5, help="stop below this much free RAM")
    arguments.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each deploy")
    args = arguments.parse_args()
    machine = machine_info()
    console.rule("[bold]Benchmark: live-model capacity")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    results = run(args.max, args.headroom_gib, args.timeout)
    settings = {"max": args.max, "headroom_gib": args.headroom_gib, "model": "tiny", "full": args.full}
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


if __name__ == "__main__":
    main()
