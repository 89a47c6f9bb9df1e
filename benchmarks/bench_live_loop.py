"""Live loop: how long a dead model server stays in beta routing, and how long a heal takes to bring it back.

The tiny model goes through the real pipeline (loopback Hub, SeaweedFS, vLLM, SQLite store: the embedded
default). The service's health watcher runs as in the service (same class, default 2 s interval). Each
sample SIGKILLs every process group of the model's server, then measures:
- *leave routing*: death → the model is no longer a routing candidate (polled every 20 ms);
- *heal requested*: death → the self-heal sensor (evaluated every 5 s, the daemon's loop floor) asks for
  a run;
- *recovered*: death → deployed and routable again, the heal run (live_deployment + latency_report)
  executed in-process right after the sensor asked (a daemon adds its run launch, ~3–7 s here).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from typing import Any

from benchmarks.common import (
    WORK_ROOT,
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
from benchmarks.fixtures import fresh_home, hub_serving, quiet_stdout, s3_cache, sample_model, submit

NAME = "live_loop"
SENSOR_INTERVAL_S = 5.0  # dagster/_daemon/sensor.py MIN_INTERVAL_LOOP_TIME
POLL_S = 0.02


def _routable(store: Any, submission_id: str) -> bool:
    from guanaco_dagster.beta.routing import deployed_candidates

    with store.session() as session:
        return any(c.submission_id == submission_id for c in deployed_candidates(session))


def _kill_server(deployer: Any, submission_id: str) -> None:
    from guanaco_dagster.deployment.local_process import server_process_groups

    for pgid in server_process_groups(deployer.get(submission_id).details["pid"]):
        os.killpg(pgid, signal.SIGKILL)


def _wait(condition: Any, timeout_s: float, what: str) -> float:
    """Poll `condition` every 20 ms; the monotonic time it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(POLL_S)
    raise SystemExit(f"{what} did not happen within {timeout_s:.0f} s")


def one_sample(
    store: Any, deployer: Any, run_heal: Any, tick_sensor: Any, submission_id: str
) -> dict[str, float]:
    """Kill the server once; time leaving routing, the heal request and the recovery."""
    from guanaco_dagster.submissions.lifecycle import Status
    from guanaco_dagster.submissions.submissions import get_submission

    _kill_server(deployer, submission_id)
    died = time.monotonic()
    left = _wait(lambda: not _routable(store, submission_id), 30, "leaving routing")
    requested = None
    while requested is None:
        next_tick = died + SENSOR_INTERVAL_S * (1 + int((time.monotonic() - died) / SENSOR_INTERVAL_S))
        time.sleep(max(0.0, next_tick - time.monotonic()))
        if tick_sensor():
            requested = time.monotonic()
        if time.monotonic() - died > 120:
            raise SystemExit("the self-heal sensor asked for no run within 120 s")
    run_started = time.monotonic()
    run_heal()
    run_s = time.monotonic() - run_started
    with store.session() as session:
        submission = get_submission(session, submission_id)
        if submission.status != Status.DEPLOYED:
            raise SystemExit(f"the heal failed: {submission.status}: {submission.failure_reason}")
    back = _wait(lambda: _routable(store, submission_id), 30, "back in routing")
    return {
        "leave_routing_s": left - died,
        "heal_requested_s": requested - died,
        "heal_run_s": run_s,
        "recovered_s": back - died,
    }


def run(samples: int) -> dict[str, Any]:
    """Deploy the tiny model, then kill and heal it `samples` times."""
    from dagster import DagsterInstance, build_sensor_context, materialize

    from assets import PIPELINE_ASSETS
    from assets.latency_report import latency_report
    from assets.live_deployment import live_deployment
    from assets.partitions import submissions_partitions
    from guanaco_dagster.beta.health import HealthSettings
    from guanaco_dagster.beta.health_watcher import watching_health
    from guanaco_dagster.definitions import build_resources
    from guanaco_dagster.settings import Settings
    from guanaco_dagster.store.database import Store
    from resources.health import HealthResource
    from sensors.self_heal_sensor import self_heal_sensor

    os.environ["GUANACO_HEALTH_MAX_HEALS_PER_HOUR"] = str(samples + 1)
    model = sample_model("tiny")
    with hub_serving([model]) as hub, s3_cache(WORK_ROOT / "s3-live-loop") as s3:
        settings = Settings(
            home=fresh_home(NAME),
            hf_endpoint=hub.endpoint,
            s3_endpoint=s3.endpoint_url,
            s3_bucket=s3.bucket,
            s3_access_key_id=s3.access_key,
            s3_secret_access_key=s3.secret_key,
            stress_requests=8,
            stress_concurrency=4,
            platform_pid=os.getpid(),
        )
        store = Store(settings.resolved_database_url).migrate()
        resources = build_resources(settings)
        deployer = resources["deployer"].get_deployer()
        with quiet_stdout():
            instance = DagsterInstance.ephemeral()
        submission_id, _ = submit(store, model.repo_id)
        instance.add_dynamic_partitions(submissions_partitions.name, [submission_id])

        def materialize_for(selection: list[Any] | None) -> None:
            with quiet_stdout():
                materialize(
                    PIPELINE_ASSETS,
                    selection=selection,
                    partition_key=submission_id,
                    instance=instance,
                    resources=resources,
                    raise_on_error=False,
                )

        def tick_sensor() -> bool:
            sensor_resources = {name: resources[name] for name in ("store", "deployer", "s3_cache")}
            sensor_resources["health"] = HealthResource(**HealthSettings().model_dump())
            with build_sensor_context(instance=instance, resources=sensor_resources) as context:
                result = self_heal_sensor(context)
            return bool(getattr(result, "run_requests", None))

        try:
            with step("deploying the tiny model through the pipeline …"):
                materialize_for(None)
            health = HealthSettings()
            rows = []
            with watching_health(store, health):
                for index in range(samples):
                    _wait(lambda: _routable(store, submission_id), 30, "routable")
                    with step(f"sample {index + 1}/{samples}: kill the server, wait for the heal …"):
                        rows.append(
                            one_sample(
                                store,
                                deployer,
                                lambda: materialize_for([live_deployment, latency_report]),
                                tick_sensor,
                                submission_id,
                            )
                        )
        finally:
            deployer.teardown_all()
    keys = ["leave_routing_s", "heal_requested_s", "heal_run_s", "recovered_s"]
    summary = {
        key: {
            "min": min(row[key] for row in rows),
            "median": statistics.median(row[key] for row in rows),
            "max": max(row[key] for row in rows),
        }
        for key in keys
    }
    labels = {
        "leave_routing_s": "death → out of routing (target ≤ 5 s)",
        "heal_requested_s": "death → heal run requested",
        "heal_run_s": "heal run: redeploy from S3 + stress test",
        "recovered_s": "death → deployed and routable again",
    }
    print_table(
        f"Live loop — tiny model, {samples} kills (health check every {health.check_interval_s:g} s, "
        f"heal after {health.heal_after_s:g} s failing)",
        ["", "min s", "median s", "max s", *(f"#{i + 1}" for i in range(samples))],
        [
            [labels[key], fmt(summary[key]["min"]), fmt(summary[key]["median"]), fmt(summary[key]["max"])]
            + [fmt(row[key]) for row in rows]
            for key in keys
        ],
    )
    return {
        "model": model.label,
        "store": "SQLite (embedded default)",
        "health": health.model_dump(),
        "sensor_interval_s": SENSOR_INTERVAL_S,
        "samples": rows,
        "summary": summary,
    }


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--samples", type=int, default=3, help="kills (each costs a vLLM start, ~30 s)")
    args = arguments.parse_args()
    samples = args.samples * 2 if args.full else args.samples
    machine = machine_info()
    console.rule("[bold]Benchmark: live loop (dead server → out of routing → healed)")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    results = run(samples)
    write_results(
        NAME,
        {"samples": samples, "full": args.full},
        rounded(results),
        machine,
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    main()
