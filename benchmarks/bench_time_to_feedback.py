"""Time to first feedback: `guanaco submit` → each stage → deployed → first feedback readable by the
developer → first `feedback_summary` materialised in Dagster, as a measured waterfall; and our deploy
against plain vLLM starting the same model on the same machine.

Through the real embedded platform (SeaweedFS, Dagster daemon, webserver and sensors, the HTTP service,
vLLM child processes, SQLite store: the embedded defaults, stress test at the default 32 requests × 8
concurrent). The developer submits through the service (as `guanaco submit` does), a simulated beta user
chats through the beta routes (as an app's backend does) and leaves feedback; the developer polls
`GET /feedback/<id>` (what `guanaco feedback` reads) until it is there. Each sample is a distinct
repository (another seed), so nothing is reused from the S3 cache; models go one after the other and each
is retired before the next, so routing finds the new one. Each sample is submitted once the platform's
spare model server is warm, as it is on a platform that has been up a little while (the wait is recorded
as `spare_wait_s`; submissions that arrive faster than a spare warms meet a prestarted server instead).

Every segment of the waterfall is the difference of two timestamps recorded by the platform (store
events, stage timings, Dagster run records, the asset materialisation) or by this script: nothing is
back-filled. The floor: plain `vllm` serving the same model from its safetensors folder with the same
engine flags, started and polled until `/v1/models` answers, alternating with our samples in the same run
(`deploy_vs_plain_vllm_ratio` = median of our `deploying` stage / median of plain vLLM's start-up). Our
deploying stage starts when the artifact is named to a server that is already warm (the spare, or one
prestarted when the download began), so the ratio measures what is left on the critical path, not the
CPU a server start costs.
Chai's ~300 s (178 s download/quantize/tensorize of a 7B + 122 s until the Kubernetes service was ready,
on GPUs) is a **published figure**, not measured here; it is shown for scale only.

    python -m benchmarks.bench_time_to_feedback [--full] [--models tiny,100m] [--samples 3]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    console,
    fmt,
    fmt_ratio,
    machine_info,
    machine_line,
    parser,
    print_table,
    ratio,
    rounded,
    step,
    write_results,
)
from benchmarks.fixtures import (
    VLLM_SERVER_MODULE,
    SampleModel,
    asset_metadata,
    dagster_runs,
    embedded_platform,
    fresh_home,
    hub_serving,
    read_timeline,
    sample_model,
    served_vllm_argv,
    vllm_process,
    wait_for_first_sensor_tick,
)

NAME = "time_to_feedback"
CHAI_PUBLISHED = {
    "source": "published figure (Chai's engineering write-up), not measured here",
    "model": "7B on GPUs",
    "download_quantize_tensorize_s": 178.0,
    "until_service_ready_s": 122.0,
    "submission_to_deployed_s": 300.0,
}
# Arguments of our server's vLLM command that are about where the weights come from, not the engine.
WEIGHT_SOURCE_ARGS = (
    "--model",
    "--load-format",
    "--model-loader-extra-config",
    "--port",
    "--served-model-name",
)
BAR_WIDTH = 36
# The figures every sample reports, in seconds since `guanaco submit` returned.
FIGURES = (
    ("submit_to_first_stage_s", "submit → first asset step started"),
    ("row_to_first_stage_s", "  submission row created → first asset step started"),
    ("submit_to_deployed_s", "submit → deployed"),
    ("deploying_s", "  deploying stage (artifact named → healthy)"),
    ("plain_vllm_startup_s", "  plain vLLM, same model and engine flags"),
    ("time_to_first_feedback_readable_s", "submit → first feedback readable (GET /feedback)"),
    ("time_to_first_feedback_summary_s", "submit → first feedback_summary in Dagster"),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _since(origin: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else (moment - origin).total_seconds()


def _poll(check: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not seen within {timeout_s:.0f} s")


def running_vllm_command(endpoint_url: str, log_path: Path) -> tuple[list[str], dict[str, str]]:
    """The vLLM command line our deployed server behind `endpoint_url` runs, and its environment."""
    process = vllm_process(endpoint_url)
    return [sys.executable, "-m", VLLM_SERVER_MODULE, *served_vllm_argv(log_path)], process.environ()


def plain_vllm_command(our_argv: list[str], model: SampleModel, port: int) -> list[str]:
    """Our server's vLLM argv with the weights read by vLLM itself from the model's safetensors folder."""
    engine_args: list[str] = []
    skip_value = False
    for arg in our_argv[our_argv.index(VLLM_SERVER_MODULE) + 1 :]:
        if skip_value:
            skip_value = False
        elif arg.split("=", 1)[0] in WEIGHT_SOURCE_ARGS:
            skip_value = "=" not in arg
        else:
            engine_args.append(arg)
    return [
        sys.executable,
        "-m",
        VLLM_SERVER_MODULE,
        "--model",
        str(model.path),
        "--served-model-name",
        "plain-vllm",
        "--port",
        str(port),
        *engine_args,
    ]


def plain_vllm_startup_s(command: list[str], env: dict[str, str], port: int, timeout_s: float) -> float:
    """Seconds from starting plain vLLM to its `/v1/models` answering; the server is stopped after."""
    import httpx

    from guanaco_dagster.embedded.processes import stop_process_group

    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"plain vLLM exited with {process.returncode}: {' '.join(command)}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _poll(ready, timeout_s, "plain vLLM's /v1/models", 0.1)
        return time.perf_counter() - started
    finally:
        stop_process_group(process)


def measure_submission(
    platform: Any, client: Any, beta: Any, model: SampleModel, user_index: int, timeout_s: float
) -> dict[str, Any]:
    """Submit `model` through the service, follow it to its first feedback summary, time every step."""
    from guanaco_dagster.ports import free_port
    from guanaco_dagster.store.database import Store
    from guanaco_dagster.store.models import Feedback
    from guanaco_dagster.submissions.lifecycle import Status
    from guanaco_dagster.submissions.submissions import get_submission, transition
    from guanaco_dagster.testing.beta_users import simulate_user_over_http
    from guanaco_dagster.testing.watch import wait_for_outcome, wait_for_summary_in_dagster

    store = Store(platform.settings.resolved_database_url)
    # A running platform keeps a warm spare server; the previous sample's deployment just used it.
    with step(f"{model.name}: waiting for the platform's spare server to be warm …"):
        spare_wait_s = platform.wait_until_warm()
    submission_id = client.submit({"model_repo": model.repo_id})
    submitted = _now()
    with step(f"{model.name}: {submission_id} going through the pipeline …"):
        status = wait_for_outcome(store, submission_id, timeout_s, health_check=platform.check_health)
    timeline = read_timeline(store, submission_id)
    if status != Status.DEPLOYED:
        return {
            "model": model.label,
            "submission_id": submission_id,
            "status": status,
            "failure_reason": timeline.failure_reason,
        }
    with step(f"{model.name}: a beta user chats and leaves feedback; the developer polls for it …"):
        chat = simulate_user_over_http(beta, user_index)
        if chat.submission_id != submission_id:
            raise RuntimeError(f"routing sent the beta user to {chat.submission_id}, not {submission_id}")
        _poll(lambda: client.feedback(submission_id).feedback, timeout_s, "the feedback on GET /feedback")
        readable = _now()
        summarised = wait_for_summary_in_dagster(platform.dagster_home, submission_id, timeout_s)
    with store.session() as session:
        feedback_at = (
            session.query(Feedback.created_at).filter_by(conversation_id=chat.conversation_id).scalar()
        )
        endpoint_url = get_submission(session, submission_id).endpoint_url
    our_argv, our_env = running_vllm_command(endpoint_url, platform.deployer().log_path(submission_id))
    runs = dagster_runs(platform, submission_id)
    metadata = asset_metadata(platform, submission_id)
    # Retire it: its server stops and routing sends the next beta user to the next model.
    platform.deployer().teardown(submission_id)
    with store.session() as session:
        transition(session, submission_id, Status.INACTIVE, message="benchmark: measured")
    port = free_port()
    with step(f"{model.name}: plain vLLM starting the same model from safetensors …"):
        plain_s = plain_vllm_startup_s(plain_vllm_command(our_argv, model, port), our_env, port, timeout_s)

    created = timeline.created_at
    stages = [
        (name, _since(submitted, created) + start, duration) for name, start, duration in timeline.stages
    ]
    deployed_s = _since(submitted, created) + (timeline.deployed_offset_s or 0.0)
    pipeline = next(run for run in runs if run.job == "submission_pipeline")
    summary_runs = [run for run in runs if run.job != "submission_pipeline" and run.created_at >= feedback_at]
    summary_run = summary_runs[0] if summary_runs else None
    feedback_s = _since(submitted, feedback_at)
    summary_s = _since(submitted, summarised)
    segments = waterfall_segments(
        stages=stages,
        run_created_s=_since(submitted, pipeline.created_at),
        run_started_s=_since(submitted, pipeline.started_at),
        deployed_s=deployed_s,
        feedback_s=feedback_s,
        readable_s=_since(submitted, readable),
        summary_run=(
            (_since(submitted, summary_run.created_at), _since(submitted, summary_run.started_at))
            if summary_run
            else None
        ),
        summary_s=summary_s,
    )
    deploying = next((duration for name, _, duration in stages if name == "deploying"), None)
    return {
        "model": model.label,
        "parameters": model.parameters,
        "weight_bytes": model.weight_bytes,
        "submission_id": submission_id,
        "status": status,
        "spare_wait_s": spare_wait_s,
        "submit_to_row_created_s": _since(submitted, created),
        "submit_to_first_stage_s": stages[0][1] if stages else None,
        # The row is committed inside `guanaco submit`, before it returns.
        "row_to_first_stage_s": stages[0][1] - _since(submitted, created) if stages else None,
        "submit_to_deployed_s": deployed_s,
        "deploying_s": deploying,
        "plain_vllm_startup_s": plain_s,
        "deploy_vs_plain_vllm_ratio": ratio(deploying, plain_s),
        "time_to_first_feedback_readable_s": _since(submitted, readable),
        "time_to_first_feedback_summary_s": summary_s,
        "beta_user_s": feedback_s - deployed_s,
        "stage_work_s": sum(duration for _, _, duration in stages),
        "stages": [{"stage": s, "start_s": start, "duration_s": d} for s, start, d in stages],
        "asset_metadata": metadata,
        "plain_vllm_command": plain_vllm_command(our_argv, model, 0)[2:],
        "segments": segments,
    }


def waterfall_segments(
    stages: list[tuple[str, float, float]],
    run_created_s: float,
    run_started_s: float | None,
    deployed_s: float,
    feedback_s: float,
    readable_s: float,
    summary_run: tuple[float | None, float | None] | None,
    summary_s: float,
) -> list[dict[str, Any]]:
    """Consecutive segments between measured moments, from `guanaco submit` returning to the summary."""
    moments: list[tuple[str, str, float | None]] = [
        ("submit → pipeline run created", "dagster", run_created_s),
        ("run queued → run started", "dagster", run_started_s),
    ]
    previous = 0.0
    if run_created_s < 0:
        # The service launches the run inside the submit request: it exists before `guanaco submit` returns,
        # so the first segment starts there, before 0.
        moments = [("run created (inside `guanaco submit`) → run started", "dagster", run_started_s)]
        previous = run_created_s
    for name, start, duration in stages:
        moments.append((f"waiting for {name}", "dagster", start))
        moments.append((name, "work", start + duration))
    moments += [
        ("last step → status deployed", "dagster", deployed_s),
        ("beta user: routed, 2 messages, feedback", "user", feedback_s),
        ("feedback stored → readable on GET /feedback", "service", readable_s),
    ]
    if summary_run is not None:
        created_s, started_s = summary_run
        moments += [
            ("feedback → summary run created", "dagster", max(created_s, feedback_s)),
            ("summary run queued → started", "dagster", started_s),
            ("summary run → feedback_summary materialised", "dagster", summary_s),
        ]
    else:  # summarised by a run that existed before the feedback arrived
        moments.append(("feedback → feedback_summary materialised", "dagster", summary_s))
    segments = []
    for label, kind, moment in moments:
        if moment is None:
            continue
        segments.append(
            {"segment": label, "kind": kind, "start_s": previous, "duration_s": moment - previous}
        )
        previous = moment
    return [s for s in segments if not (s["segment"].startswith("waiting for") and s["duration_s"] < 0.005)]


def print_waterfall(result: dict[str, Any]) -> None:
    """Every segment from `guanaco submit` to the first summary, with its bar on one time axis."""
    total = result["time_to_first_feedback_summary_s"] or 1.0
    scale = BAR_WIDTH / total
    colours = {"work": "green", "dagster": "yellow", "user": "cyan", "service": "magenta"}
    rows = [
        [
            segment["segment"],
            segment["kind"],
            fmt(segment["start_s"], 1),
            fmt(segment["duration_s"], 2),
            " " * int(segment["start_s"] * scale)
            + f"[{colours[segment['kind']]}]"
            + "█" * max(1, round(segment["duration_s"] * scale))
            + "[/]",
        ]
        for segment in result["segments"]
    ]
    rows.append(["first feedback_summary in Dagster", "", fmt(total, 1), "", " " * BAR_WIDTH + "◆"])
    print_table(
        f"Waterfall — {result['model']} ({result['submission_id']}), seconds since `guanaco submit` returned",
        ["segment", "kind", "starts at", "took", "timeline"],
        rows,
        left_columns=2,
        left_last=True,
        caption="Each segment is the gap between two recorded moments. work = the pipeline's stage clocks; "
        "dagster = runs, steps, hand-offs; user = the simulated beta user; service = the developer's read.",
    )


def summarise_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Min, median and max of every figure over one model's deployed samples."""
    ok = [s for s in samples if s["status"] == "deployed"]
    summary: dict[str, Any] = {"samples": len(samples), "deployed": len(ok)}
    for key, _ in (*FIGURES, ("deploy_vs_plain_vllm_ratio", "")):
        values = [s[key] for s in ok if s.get(key) is not None]
        if values:
            summary[key] = {
                "min": min(values),
                "median": statistics.median(values),
                "max": max(values),
                # Interpolated between the two slowest samples when there are fewer than 20.
                "p95": statistics.quantiles(values, n=20, method="inclusive")[-1]
                if len(values) > 1
                else values[0],
            }
    deploying = summary.get("deploying_s", {}).get("median")
    plain = summary.get("plain_vllm_startup_s", {}).get("median")
    # The headline ratio: medians of both sides, measured alternately in this run.
    summary["deploy_vs_plain_vllm_ratio"] = ratio(deploying, plain)
    return summary


def print_summary(per_model: dict[str, dict[str, Any]]) -> None:
    """Median (min–max) of each figure per model, and Chai's published figure for scale."""
    names = list(per_model)

    def cell(summary: dict[str, Any], key: str) -> str:
        value = summary.get(key)
        if not value:
            return "–"
        return f"{value['median']:.1f} ({value['min']:.1f}–{value['max']:.1f})"

    rows = [[label, *(cell(per_model[n]["summary"], key) for n in names)] for key, label in FIGURES]
    rows.append(
        [
            "deploy ÷ plain vLLM (ratio of medians)",
            *(fmt_ratio(per_model[n]["summary"]["deploy_vs_plain_vllm_ratio"]) for n in names),
        ]
    )
    rows.append(
        [
            "samples deployed",
            *(f"{per_model[n]['summary']['deployed']}/{per_model[n]['summary']['samples']}" for n in names),
        ]
    )
    print_table(
        "Time to first feedback — seconds after `guanaco submit` returned, median (min–max)",
        ["", *names],
        rows,
        caption="For scale only, a published figure, not measured here: Chai reports "
        f"~{CHAI_PUBLISHED['submission_to_deployed_s']:.0f} s from submission to a ready service for a 7B "
        "model on GPUs. Ours: CPU-only, far smaller models.",
    )


def run(model_names: list[str], samples: int, timeout_s: float) -> dict[str, Any]:
    """Start the platform once and measure each model `samples` times (a distinct repository each)."""
    import httpx

    from guanaco_dagster.cli.client import GuanacoClient
    from guanaco_dagster.store.database import Store
    from guanaco_dagster.submissions.developers import issue_key

    models = {name: [sample_model(name, seed=seed) for seed in range(samples)] for name in model_names}
    everything = [model for batch in models.values() for model in batch]
    per_model: dict[str, dict[str, Any]] = {}
    with (
        hub_serving(everything) as hub,
        embedded_platform(fresh_home(NAME), hub.endpoint, service=True, webserver=True) as platform,
    ):
        daemon_ready_s = wait_for_first_sensor_tick(platform)
        with Store(platform.settings.resolved_database_url).session() as session:
            _developer, key = issue_key(session, "bench-developer")
        beta_headers = {"Authorization": f"Bearer {platform.beta_token}"}
        with (
            GuanacoClient(platform.service_url, key) as client,
            httpx.Client(base_url=platform.service_url, headers=beta_headers, timeout=120) as beta,
        ):
            user = 0
            for name, batch in models.items():
                results = []
                for model in batch:
                    result = measure_submission(platform, client, beta, model, user, timeout_s)
                    user += 1
                    results.append(result)
                    if result["status"] != "deployed":
                        console.print(
                            f"[red]{result['model']}: {result['status']}: {result['failure_reason']}[/]"
                        )
                per_model[name] = {"samples": results, "summary": summarise_samples(results)}
                deployed = [r for r in results if r["status"] == "deployed"]
                if deployed:
                    median_sample = sorted(deployed, key=lambda r: r["time_to_first_feedback_summary_s"])[
                        len(deployed) // 2
                    ]
                    print_waterfall(median_sample)
        settings = platform.settings
        stress = {
            "requests": settings.stress_requests,
            "concurrency": settings.stress_concurrency,
            "max_tokens": settings.stress_max_tokens,
        }
    print_summary(per_model)
    return {
        "daemon_first_tick_s": daemon_ready_s,
        "stress_test": stress,
        "chai_published": CHAI_PUBLISHED,
        "models": per_model,
    }


def main() -> None:
    args = _parse_args()
    machine = machine_info()
    console.rule("[bold]Benchmark: time to first feedback")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    models = (args.models or ("tiny,100m" if args.full else "tiny")).split(",")
    results = run(models, args.samples, args.timeout)
    settings = {
        "models": models,
        "samples": args.samples,
        "timeout_s": args.timeout,
        "store": "SQLite (embedded default)",
        "full": args.full,
    }
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


def _parse_args() -> Any:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--models", default="", help="comma-separated: tiny, 100m, 400m (quick: tiny)")
    arguments.add_argument("--samples", type=int, default=3, help="distinct submissions per model (≥ 3)")
    arguments.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each phase")
    return arguments.parse_args()


if __name__ == "__main__":
    main()
