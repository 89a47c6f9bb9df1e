"""Time to first feedback: submission → each stage → deployed → first feedback summary, as a waterfall.

Through the real embedded platform (SeaweedFS, Dagster daemon and sensors, vLLM child processes, SQLite
store: the embedded defaults, stress test at the default 32 requests × 8 concurrent): a submission row is
written as the service writes it, the submission sensor picks it up, the pipeline runs, a simulated beta
user is routed to the model, chats twice and leaves feedback, and the feedback sensor summarises it.
Models go one after the other (each is retired before the next, so routing finds the new one).

Where the seconds go: stage work (the five stages' own clocks), Dagster/sensor overhead (sensor pickup,
run launch, run start-up, hand-offs between steps, feedback sensor and summary run), the simulated user,
and the summary computation itself (timed separately in this process). Baseline: Chai's published ~300 s
from submission to a ready service for a 7B model on GPUs (178 s download/quantize/tensorize + 122 s until
the Kubernetes service was ready).

    python -m benchmarks.bench_time_to_feedback [--full] [--models tiny,100m]
"""

from __future__ import annotations

import time
from datetime import datetime
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
    SampleModel,
    asset_metadata,
    dagster_runs,
    embedded_platform,
    fresh_home,
    hub_serving,
    read_timeline,
    sample_model,
    submit,
    wait_for_first_sensor_tick,
)

NAME = "time_to_feedback"
CHAI_BASELINE = {
    "model": "7B on GPUs (Chai, published)",
    "download_quantize_tensorize_s": 178.0,
    "until_service_ready_s": 122.0,
    "submission_to_deployed_s": 300.0,
}
BAR_WIDTH = 36


def _offset(at: datetime | None, origin: datetime) -> float | None:
    return None if at is None else (at - origin).total_seconds()


def measure_submission(
    platform: Any, model: SampleModel, user_index: int, timeout_s: float
) -> dict[str, Any]:
    """Submit `model`, follow it to its first feedback summary, and break the time down."""
    from sqlalchemy import select

    from guanaco_dagster.feedback.feedback_report import build_feedback_report
    from guanaco_dagster.store.database import Store
    from guanaco_dagster.store.models import Feedback
    from guanaco_dagster.submissions.lifecycle import Status
    from guanaco_dagster.submissions.submissions import transition
    from guanaco_dagster.testing.beta_users import simulate_user
    from guanaco_dagster.testing.watch import wait_for_outcome, wait_for_summary

    store = Store(platform.settings.resolved_database_url)
    submission_id, submitted_at = submit(store, model.repo_id)
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
    with step(f"{model.name}: a beta user chats, leaves feedback; waiting for the summary …"):
        chat = simulate_user(store, user_index)
        _summary, summarised_at = wait_for_summary(store, submission_id, 1, timeout_s)
    if chat.submission_id != submission_id:
        raise RuntimeError(f"routing sent the beta user to {chat.submission_id}, not {submission_id}")
    with store.session() as session:
        feedback_at = session.scalar(
            select(Feedback.created_at).where(Feedback.conversation_id == chat.conversation_id)
        )
        summary_work_s = _timed_summary(session, submission_id, build_feedback_report)
    runs = dagster_runs(platform, submission_id)
    metadata = asset_metadata(platform, submission_id)
    pipeline_run = next(run for run in runs if run.job == "submission_pipeline")
    summary_jobs = ("feedback_summary_job", "summarise_feedback_batch")
    summary_run = next((run for run in runs if run.job in summary_jobs), None)
    # Retire it: its server stops and routing sends the next beta user to the next model.
    platform.deployer().teardown(submission_id)
    with store.session() as session:
        transition(session, submission_id, Status.INACTIVE, message="benchmark: measured")

    def at(moment: datetime | None) -> float | None:
        return _offset(moment, submitted_at)

    stages = timeline.stages
    first_stage_s = timeline.first_stage_offset_s
    deployed_s = timeline.deployed_offset_s or 0.0
    feedback_s = at(feedback_at) or 0.0
    summary_s = at(summarised_at) or 0.0
    run_created_s, run_started_s = at(pipeline_run.created_at), at(pipeline_run.started_at)
    summary_created_s = at(summary_run.created_at) if summary_run else None
    summary_started_s = at(summary_run.started_at) if summary_run else None
    overhead = {
        "sensor_pickup_s": run_created_s,
        "run_queue_and_launch_s": (run_started_s or 0) - (run_created_s or 0),
        "run_start_to_first_step_s": first_stage_s - (run_started_s or 0),
        "handoffs_between_steps_s": timeline.gaps_between_stages_s,
        "last_step_to_deployed_s": timeline.after_last_stage_s,
        "feedback_sensor_pickup_s": (summary_created_s or 0) - feedback_s,
        "summary_run_queue_and_launch_s": (summary_started_s or 0) - (summary_created_s or 0),
        "summary_run_start_to_stored_s": summary_s - (summary_started_s or 0) - summary_work_s,
    }
    stage_work_s = timeline.stage_work_s
    user_s = feedback_s - deployed_s
    overhead_s = sum(value or 0.0 for value in overhead.values())
    details = stage_details(metadata, stages)
    segments = [
        ("submission sensor → run created", "dagster", 0.0, run_created_s),
        ("run queued → run started", "dagster", run_created_s, overhead["run_queue_and_launch_s"]),
        ("run process → first step", "dagster", run_started_s, overhead["run_start_to_first_step_s"]),
        *(
            (f"{stage}: {details.get(stage, '')}".rstrip(": "), "work", start, duration)
            for stage, start, duration in stages
        ),
        ("hand-offs between steps (sum)", "dagster", None, overhead["handoffs_between_steps_s"]),
        ("beta user: routed, 2 messages, feedback", "user", deployed_s, user_s),
        (
            "feedback sensor → summary run created",
            "dagster",
            feedback_s,
            overhead["feedback_sensor_pickup_s"],
        ),
        (
            "summary run queued → started",
            "dagster",
            summary_created_s,
            overhead["summary_run_queue_and_launch_s"],
        ),
        (
            "summary run start-up + store",
            "dagster",
            summary_started_s,
            overhead["summary_run_start_to_stored_s"],
        ),
        ("summary computation (timed in-process)", "work", summary_s - summary_work_s, summary_work_s),
    ]
    return {
        "model": model.label,
        "parameters": model.parameters,
        "weight_bytes": model.weight_bytes,
        "submission_id": submission_id,
        "status": status,
        "submission_to_deployed_s": deployed_s,
        "submission_to_first_summary_s": summary_s,
        "stages": [{"stage": s, "start_s": start, "duration_s": d} for s, start, d in stages],
        "asset_metadata": metadata,
        "stage_work_s": stage_work_s,
        "dagster_overhead_s": overhead_s,
        "dagster_overhead": overhead,
        "beta_user_s": user_s,
        "summary_work_s": summary_work_s,
        "unaccounted_s": summary_s - (stage_work_s + overhead_s + user_s + summary_work_s),
        "segments": [
            {"segment": label, "kind": kind, "start_s": start, "duration_s": duration}
            for label, kind, start, duration in segments
        ],
    }


def stage_details(
    metadata: dict[str, dict[str, Any]], stages: list[tuple[str, float, float]]
) -> dict[str, str]:
    """What each stage's asset says about its own seconds (e.g. the download within `downloading`)."""
    durations = {stage: duration for stage, _, duration in stages}
    raw = metadata.get("raw_weights", {})
    tensorized = metadata.get("tensorized_artifact", {})
    upload = metadata.get("cached_s3_object", {})
    deployment = metadata.get("live_deployment", {})
    report = metadata.get("latency_report", {})
    details = {}
    if "download_s" in raw:
        checks_s = durations.get("downloading", 0.0) - raw["download_s"]
        details["downloading"] = f"bytes {raw['download_s']:.2f} s, sanity checks {checks_s:.2f} s"
    if "serialize_s" in tensorized:
        details["tensorizing"] = (
            f"serialize {tensorized['serialize_s']:.2f} s, verify {tensorized.get('verify_s', 0):.2f} s"
        )
    if "upload_s" in upload:
        details["uploading"] = f"{upload.get('upload_MB_per_s', 0):.0f} MB/s"
    if "startup_s" in deployment:
        details["deploying"] = f"vLLM start-up {deployment['startup_s']:.1f} s"
    if "latency_p95_s" in report:
        details["stress_testing"] = (
            f"p95 {report['latency_p95_s']:.2f} s, {report.get('tokens_per_s', 0):.0f} tok/s"
        )
    return details


def _timed_summary(session: Any, submission_id: str, build: Any) -> float:
    started = time.perf_counter()
    build(session, submission_id, b"benchmark-pseudonym-key")
    return time.perf_counter() - started


def print_waterfall(result: dict[str, Any]) -> None:
    """Every segment from submission to first summary, with its bar on one time axis."""
    total = result["submission_to_first_summary_s"] or 1.0
    scale = BAR_WIDTH / total
    colours = {"work": "green", "dagster": "yellow", "user": "cyan"}
    rows = []
    for segment in result["segments"]:
        start, duration = segment["start_s"], segment["duration_s"] or 0.0
        if start is None:
            bar = "[yellow]" + "▒" * max(1, round(duration * scale)) + "[/] (spread out)"
        else:
            bar = (
                " " * int(start * scale)
                + f"[{colours[segment['kind']]}]"
                + "█" * max(1, round(duration * scale))
                + "[/]"
            )
        rows.append([segment["segment"], segment["kind"], fmt(start, 1), fmt(duration, 2), bar])
    rows.append(["first feedback summary", "", fmt(total, 1), "", " " * BAR_WIDTH + "◆"])
    print_table(
        f"Waterfall — {result['model']} ({result['submission_id']}), seconds since submission",
        ["segment", "kind", "starts at", "took", "timeline"],
        rows,
        left_columns=2,
        left_last=True,
        caption="work = the pipeline's own stage clocks; dagster = sensors, run launch, step hand-offs; "
        "user = the simulated beta user.",
    )


def sanity_checks_s(result: dict[str, Any]) -> float | None:
    """Seconds of `downloading` spent after the bytes arrived (config, architecture, tokenizer checks)."""
    download_s = result["asset_metadata"].get("raw_weights", {}).get("download_s")
    stage_s = next((s["duration_s"] for s in result["stages"] if s["stage"] == "downloading"), None)
    return None if download_s is None or stage_s is None else stage_s - download_s


def print_summary(results: list[dict[str, Any]]) -> None:
    """Both models side by side against Chai's published numbers."""
    chai = CHAI_BASELINE
    ok = [r for r in results if r["status"] == "deployed"]

    def stage_sum(result: dict[str, Any], names: tuple[str, ...]) -> float:
        return sum(s["duration_s"] for s in result["stages"] if s["stage"] in names)

    prepare = ("downloading", "tensorizing", "uploading")
    serve = ("deploying", "stress_testing")
    rows = [
        ["weights (MB)", *(f"{r['weight_bytes'] / 1e6:.0f}" for r in ok), "~14000 (7B fp16)"],
        [
            "download + tensorize + upload (s)",
            *(fmt(stage_sum(r, prepare), 1) for r in ok),
            f"{chai['download_quantize_tensorize_s']:.0f}",
        ],
        ["  of which sanity checks (s)", *(fmt(sanity_checks_s(r), 1) for r in ok), "–"],
        ["  ÷ Chai's 178 s", *(fmt_ratio(ratio(stage_sum(r, prepare), 178.0)) for r in ok), "1.00×"],
        [
            "deploy + stress test (s)",
            *(fmt(stage_sum(r, serve), 1) for r in ok),
            f"{chai['until_service_ready_s']:.0f}",
        ],
        ["  ÷ Chai's 122 s", *(fmt_ratio(ratio(stage_sum(r, serve), 122.0)) for r in ok), "1.00×"],
        [
            "submission → deployed (s)",
            *(fmt(r["submission_to_deployed_s"], 1) for r in ok),
            f"{chai['submission_to_deployed_s']:.0f}",
        ],
        [
            "  ÷ Chai's 300 s",
            *(fmt_ratio(ratio(r["submission_to_deployed_s"], 300.0)) for r in ok),
            "1.00×",
        ],
        [
            "submission → first feedback summary (s)",
            *(fmt(r["submission_to_first_summary_s"], 1) for r in ok),
            "–",
        ],
        [
            "  ÷ Chai's 300 s (which stops at deployed)",
            *(fmt_ratio(ratio(r["submission_to_first_summary_s"], 300.0)) for r in ok),
            "–",
        ],
        ["stage work, sum of 5 stages (s)", *(fmt(r["stage_work_s"], 1) for r in ok), "–"],
        [
            "Dagster/sensor overhead (s)",
            *(
                f"{r['dagster_overhead_s']:.1f} ({share:.0%})"
                for r in ok
                for share in [r["dagster_overhead_s"] / r["submission_to_first_summary_s"]]
            ),
            "–",
        ],
        *(
            [
                f"  {key.removesuffix('_s').replace('_', ' ')}",
                *(fmt(r["dagster_overhead"][key], 2) for r in ok),
                "",
            ]
            for key in (ok[0]["dagster_overhead"] if ok else {})
        ),
        ["beta user chat + feedback (s)", *(fmt(r["beta_user_s"], 1) for r in ok), "–"],
        ["summary computation (s)", *(fmt(r["summary_work_s"], 3) for r in ok), "–"],
    ]
    print_table(
        "Time to first feedback — where the seconds go (vs Chai's published ~300 s)",
        ["", *(r["model"].split(" (")[0] for r in ok), chai["model"]],
        rows,
        caption="Chai: 178 s to download, quantize and tensorize a 7B model + 122 s until the Kubernetes "
        "service was ready, on GPUs. Ours: CPU-only, far smaller models — the ratio says how our plumbing "
        "compares, not that a 7B would be as fast here.",
    )
    for failed in (r for r in results if r["status"] != "deployed"):
        console.print(f"[red]{failed['model']}: {failed['status']}: {failed.get('failure_reason')}[/]")


def run(model_names: list[str], timeout_s: float) -> dict[str, Any]:
    """Start the platform once and measure each model in turn."""
    models = [sample_model(name) for name in model_names]
    results = []
    with hub_serving(models) as hub, embedded_platform(fresh_home(NAME), hub.endpoint) as platform:
        daemon_ready_s = wait_for_first_sensor_tick(platform)
        for index, model in enumerate(models):
            result = measure_submission(platform, model, index, timeout_s)
            results.append(result)
            if result["status"] == "deployed":
                print_waterfall(result)
        settings = platform.settings
        stress = {
            "requests": settings.stress_requests,
            "concurrency": settings.stress_concurrency,
            "max_tokens": settings.stress_max_tokens,
        }
    print_summary(results)
    return {
        "daemon_first_tick_s": daemon_ready_s,
        "stress_test": stress,
        "chai_baseline": CHAI_BASELINE,
        "submissions": results,
    }


def main() -> None:
    args = _parse_args()
    machine = machine_info()
    console.rule("[bold]Benchmark: time to first feedback")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    models = (args.models or ("tiny,100m,400m" if args.full else "tiny,100m")).split(",")
    results = run(models, args.timeout)
    settings = {
        "models": models,
        "timeout_s": args.timeout,
        "store": "SQLite (embedded default)",
        "full": args.full,
    }
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


def _parse_args() -> Any:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--models", default="", help="comma-separated: tiny, 100m, 400m (full adds 400m)")
    arguments.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each phase")
    return arguments.parse_args()


if __name__ == "__main__":
    main()
