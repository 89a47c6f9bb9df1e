"""Two models decoding at once: aggregate tokens/s against one model alone, with and without own cores.

Two different models (same size, different random weights) are served by `LocalProcessDeployer`, the
deployer the pipeline uses, in two layouts at once: "own cores" (the default now: each server's worker
bound to its own core via VLLM_CPU_OMP_THREADS_BIND, round-robin) and "vLLM auto" (what every server did
before: each binds core 0). Each sample, layout after layout, sends the stress-test client's streamed
completions to model A alone, then to A and B at the same time (aggregate = all tokens / wall time); idle
servers wait meanwhile. The client shares the cores.

    python -m benchmarks.bench_two_models [--model 100m] [--samples 5] [--max-tokens 32]
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    WORK_ROOT,
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
from benchmarks.fixtures import CachedModel, s3_cache, sample_model, tensorize_and_upload
from guanaco_dagster.stages.stress import StressConfig, run_stress_test

NAME = "two_models"
LAYOUTS = {"own cores": 1, "vLLM auto (before)": None}


def bound_cores(log_path: Path) -> str:
    """The worker's cores as vLLM logged them (`core ids=[…]`), '?' when not logged."""
    found = re.findall(r"core ids=(\[[0-9, ]*\])", log_path.read_text(errors="replace"))
    return found[-1] if found else "?"


def decode(endpoint_url: str, served_name: str, config: StressConfig) -> tuple[int, float]:
    """(output tokens, seconds) of one stress-test burst against one server."""
    report = run_stress_test(endpoint_url, served_name, config)
    if report.errors:
        raise RuntimeError(f"{report.errors} of {report.requests} requests to {served_name} failed")
    return report.output_tokens, report.wall_s


def decode_together(targets: list[tuple[str, str]], config: StressConfig) -> float:
    """Aggregate tokens/s of bursts sent to every target at the same time."""
    tokens: list[int] = []

    def one(endpoint_url: str, served_name: str) -> None:
        tokens.append(decode(endpoint_url, served_name, config)[0])

    threads = [threading.Thread(target=one, args=target) for target in targets]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - started
    if len(tokens) != len(targets):
        raise RuntimeError("a concurrent burst failed")
    return sum(tokens) / wall_s


@dataclass
class Layout:
    """Two servers deployed one way, and what was measured on them."""

    name: str
    cores_per_server: int | None
    deployer: Any
    specs: list[Any]
    targets: list[tuple[str, str]] = field(default_factory=list)
    core_ids: list[str] = field(default_factory=list)
    alone: list[float] = field(default_factory=list)
    together: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "layout": self.name,
            "cores_per_server": self.cores_per_server,
            "vllm_core_ids": self.core_ids,
            "one_model_tokens_per_s": self.alone,
            "two_models_aggregate_tokens_per_s": self.together,
            "one_model_median": statistics.median(self.alone),
            "one_model_min": min(self.alone),
            "two_models_median": statistics.median(self.together),
            "two_models_min": min(self.together),
            "scaling_median": ratio(statistics.median(self.together), statistics.median(self.alone)),
        }


def deploy_layout(name: str, cores_per_server: int | None, cached: list[CachedModel], s3: Any) -> Layout:
    """Start both models' servers with `cores_per_server` (None: vLLM's own binding, as before)."""
    from guanaco_dagster.deployment.base import DeploymentSpec
    from guanaco_dagster.deployment.local_process import LocalProcessDeployer

    slug = re.sub(r"[^a-z]+", "-", name.lower()).strip("-")
    deployer = LocalProcessDeployer(
        state_dir=WORK_ROOT / NAME / slug,
        s3_endpoint_url=s3.endpoint_url,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        s3_region=s3.region,
        platform_pid=os.getpid(),
        cores_per_server=cores_per_server,
    )
    specs = [
        DeploymentSpec(f"bench-{slug}-{index}", model.artifact_uri, f"bench-{slug}-{index}")
        for index, model in enumerate(cached)
    ]
    layout = Layout(name, cores_per_server, deployer, specs)
    with step(f"{name}: starting two vLLM servers …"):
        deployments = [deployer.deploy(spec) for spec in specs]
    layout.targets = [(d.endpoint_url, s.served_model_name) for d, s in zip(deployments, specs, strict=True)]
    layout.core_ids = [bound_cores(Path(d.details["log_path"])) for d in deployments]
    for target in layout.targets:  # warm-up
        run_stress_test(*target, StressConfig(concurrency=1, requests=1, max_tokens=4))
    return layout


def measure(layouts: list[Layout], args: Any) -> None:
    """Per sample and layout in turn (so load from elsewhere hits both alike): A alone, then A and B."""
    config = StressConfig(concurrency=args.concurrency, requests=args.requests, max_tokens=args.max_tokens)
    with step(f"{args.samples} samples per layout of one model alone, then both at once …"):
        for _ in range(args.samples):
            for layout in layouts:
                tokens, wall_s = decode(*layout.targets[0], config)
                layout.alone.append(tokens / wall_s)
                layout.together.append(decode_together(layout.targets, config))


def run(args: Any) -> dict[str, Any]:
    """Both layouts served at once, measured in turns; print one table."""
    models = [sample_model(args.model, seed=seed) for seed in (0, 1)]
    layouts: list[Layout] = []
    with s3_cache(WORK_ROOT / "s3") as s3:
        cached = [tensorize_and_upload(model, s3) for model in models]
        try:
            for name, cores in LAYOUTS.items():
                layouts.append(deploy_layout(name, cores, cached, s3))
            measure(layouts, args)
        finally:
            for layout in layouts:
                for spec in layout.specs:
                    layout.deployer.teardown(spec.submission_id)
    results = [layout.summary() for layout in layouts]
    rows = [
        [
            result["layout"],
            " / ".join(result["vllm_core_ids"]),
            fmt(result["one_model_min"], 0),
            fmt(result["one_model_median"], 0),
            fmt(result["two_models_min"], 0),
            fmt(result["two_models_median"], 0),
            fmt_ratio(result["scaling_median"]),
        ]
        for result in results
    ]
    print_table(
        f"Two models decoding at once — {models[0].label} ×2, {args.requests}×{args.max_tokens} tokens "
        f"per model per sample, {args.concurrency} concurrent, {args.samples} samples",
        [
            "layout",
            "vLLM core ids (A / B)",
            "1 model min",
            "1 model median",
            "2 models min",
            "2 models median",
            "2 ÷ 1 (median)",
        ],
        rows,
        caption="tokens/s; two models = aggregate of both servers. The client shares the same cores.",
    )
    return {"model": models[0].label, "layouts": results}


def main() -> None:
    args = _parse_args()
    machine = machine_info()
    console.rule("[bold]Benchmark: two models decoding at once")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    results = run(args)
    settings = {
        "model": args.model,
        "samples": args.samples,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
    }
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


def _parse_args() -> Any:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--model", default="100m", help="tiny or 100m")
    arguments.add_argument("--samples", type=int, default=5)
    arguments.add_argument("--requests", type=int, default=8, help="requests per model per sample")
    arguments.add_argument("--concurrency", type=int, default=4, help="concurrent requests per model")
    arguments.add_argument("--max-tokens", type=int, default=32)
    return arguments.parse_args()


if __name__ == "__main__":
    main()
