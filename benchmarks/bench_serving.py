"""Serving: our inference server (vLLM, weights streamed from S3) against `transformers.generate`.

The same model, the same role-play prompts (the stress test's) and the same number of new tokens per
request (sampling at temperature 0.8, end-of-sequence ignored) at batch 1, 16 and 64. vLLM gets `batch`
concurrent streamed requests through `LocalProcessDeployer` — the server the pipeline deploys; transformers
gets the same prompts as one left-padded batch in this process. Per request: latency and time to first
token; per batch: generated tokens per second. Run back to back: transformers first, then vLLM (so the
idle server never shares the cores with transformers). Client and server share the two cores.

    python -m benchmarks.bench_serving [--full] [--model 100m] [--max-tokens 32]
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.common import (
    WORK_ROOT,
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
from benchmarks.fixtures import s3_cache, sample_model, tensorize_and_upload
from guanaco_dagster.stages.stress import STRESS_PROMPTS, StressConfig, run_stress_test

NAME = "serving"
BATCHES = (1, 16, 64)
# FIELD-NOTES (same machine class): 100M fp32, 16 concurrent x 64 tokens: vLLM ~270-355 tok/s, about
# 1.0-1.4x transformers.generate; 1.9x at batch 64.
FIELD_NOTES = "FIELD-NOTES: 100M fp32, 16×64 tokens: vLLM 270–355 tok/s ≈ 1.0–1.4× generate; 1.9× at batch 64"


@dataclass(frozen=True)
class BatchResult:
    """One engine at one batch size."""

    engine: str
    batch: int
    requests: int
    output_tokens: int
    wall_s: float
    tokens_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    errors: int = 0


def requests_for(batch: int, full: bool) -> int:
    """Requests per batch size: sequential ones at batch 1 (enough for a median that one outlier cannot
    move), one (quick) or two (full) full waves above."""
    if batch == 1:
        return 16 if full else 8
    return batch * (2 if full else 1)


# transformers ---------------------------------------------------------------------------------------


def generate_batches(
    model_dir: Any, batches: tuple[int, ...], max_tokens: int, full: bool
) -> list[BatchResult]:
    """`transformers.generate` on left-padded batches of the stress prompts, timed per step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    class FirstToken(StoppingCriteria):
        """Called after every decoding step; the first call marks the first token."""

        def __init__(self) -> None:
            self.first_at: float | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if self.first_at is None:
                self.first_at = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    def one_call(prompts: list[str]) -> tuple[float, float, int]:
        inputs = tokenizer(prompts, return_tensors="pt", padding=True)
        marker = FirstToken()
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=True,
                temperature=0.8,
                pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([marker]),
            )
        ended = time.perf_counter()
        new_tokens = (output.shape[1] - inputs["input_ids"].shape[1]) * len(prompts)
        return ended - started, (marker.first_at or ended) - started, new_tokens

    one_call(list(STRESS_PROMPTS[:1]))  # warm-up: first call pays for lazy initialisation
    results = []
    for batch in batches:
        count = requests_for(batch, full)
        latencies, ttfts, tokens = [], [], 0
        started = time.perf_counter()
        for first in range(0, count, batch):
            size = min(batch, count - first)
            prompts = [STRESS_PROMPTS[(first + i) % len(STRESS_PROMPTS)] for i in range(size)]
            latency, ttft, new_tokens = one_call(prompts)
            # Every request of a batch finishes when the batch does.
            latencies += [latency] * size
            ttfts += [ttft] * size
            tokens += new_tokens
        wall = time.perf_counter() - started
        results.append(_summarise("transformers.generate", batch, latencies, ttfts, tokens, wall))
    return results


def _summarise(
    engine: str, batch: int, latencies: list[float], ttfts: list[float], tokens: int, wall_s: float
) -> BatchResult:
    return BatchResult(
        engine=engine,
        batch=batch,
        requests=len(latencies),
        output_tokens=tokens,
        wall_s=wall_s,
        tokens_per_s=tokens / wall_s if wall_s else 0.0,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
    )


# vLLM -----------------------------------------------------------------------------------------------


def serve_batches(
    endpoint_url: str, served_name: str, batches: tuple[int, ...], max_tokens: int, full: bool
) -> list[BatchResult]:
    """`batch` concurrent streamed completions at a time against the vLLM server (the stress-test client)."""
    run_stress_test(
        endpoint_url, served_name, StressConfig(stress_concurrency=1, stress_requests=1, stress_max_tokens=4)
    )  # warm
    results = []
    for batch in batches:
        config = StressConfig(
            stress_concurrency=batch, stress_requests=requests_for(batch, full), stress_max_tokens=max_tokens
        )
        report = run_stress_test(endpoint_url, served_name, config)
        results.append(
            BatchResult(
                engine="vLLM (our server)",
                batch=batch,
                requests=report.requests,
                output_tokens=report.output_tokens,
                wall_s=report.wall_s,
                tokens_per_s=report.tokens_per_s,
                latency_p50_s=report.latency_p50_s,
                latency_p95_s=report.latency_p95_s,
                ttft_p50_s=report.ttft_p50_s,
                ttft_p95_s=report.ttft_p95_s,
                errors=report.errors,
            )
        )
    return results


def run(model_name: str, max_tokens: int, full: bool) -> dict[str, Any]:
    """Both engines on every batch size; print the side-by-side table."""
    from guanaco_dagster.deployment.base import DeploymentSpec
    from guanaco_dagster.deployment.local_process import LocalProcessDeployer

    model = sample_model(model_name)
    with step(f"transformers.generate on {model.label} …"):
        hf_results = generate_batches(model.path, BATCHES, max_tokens, full)
    with s3_cache(WORK_ROOT / "s3") as s3:
        cached = tensorize_and_upload(model, s3)
        deployer = LocalProcessDeployer(
            state_dir=WORK_ROOT / NAME / "servers",
            s3_endpoint_url=s3.endpoint_url,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            s3_region=s3.region,
            platform_pid=os.getpid(),
        )
        spec = DeploymentSpec(
            submission_id=f"bench-serving-{model_name}",
            artifact_uri=cached.artifact_uri,
            served_model_name=f"bench-{model_name}",
        )
        try:
            with step("starting vLLM (weights from S3) …"):
                deployment = deployer.deploy(spec)
            with step(f"vLLM on {model.label} …"):
                vllm_results = serve_batches(
                    deployment.endpoint_url, spec.served_model_name, BATCHES, max_tokens, full
                )
        finally:
            deployer.teardown(spec.submission_id)
    rows, comparisons = [], []
    for hf, vl in zip(hf_results, vllm_results, strict=True):
        speedup = ratio(vl.tokens_per_s, hf.tokens_per_s)
        comparisons.append(
            {
                "batch": hf.batch,
                "tokens_per_s_ratio_vllm_to_generate": speedup,
                "latency_p50_ratio_vllm_to_generate": ratio(vl.latency_p50_s, hf.latency_p50_s),
                "ttft_p50_ratio_vllm_to_generate": ratio(vl.ttft_p50_s, hf.ttft_p50_s),
            }
        )
        for result in (hf, vl):
            rows.append(
                [
                    result.batch,
                    result.engine,
                    f"{result.requests}×{max_tokens}",
                    fmt(result.tokens_per_s, 0),
                    fmt(result.latency_p50_s),
                    fmt(result.latency_p95_s),
                    fmt(result.ttft_p50_s, 3),
                    fmt(result.ttft_p95_s, 3),
                    result.errors,
                    fmt_ratio(speedup) if result is vl else "1.00×",
                ]
            )
    print_table(
        f"Serving — {model.label}, fp32, {max_tokens} new tokens per request",
        [
            "batch",
            "engine",
            "requests",
            "tok/s",
            "p50 s",
            "p95 s",
            "TTFT p50 s",
            "TTFT p95 s",
            "errors",
            "tok/s ÷ generate",
        ],
        rows,
        left_columns=2,
        caption=f"vLLM start-up (S3 → healthy + 1-token smoke test): {deployment.startup_s:.1f} s. "
        + FIELD_NOTES,
    )
    return {
        "model": model.label,
        "max_tokens": max_tokens,
        "vllm_startup_s": deployment.startup_s,
        "transformers": [result.__dict__ for result in hf_results],
        "vllm": [result.__dict__ for result in vllm_results],
        "comparison": comparisons,
        "field_notes": FIELD_NOTES,
    }


def main() -> None:
    args = _parse_args()
    machine = machine_info()
    console.rule("[bold]Benchmark: serving (vLLM vs transformers.generate)")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    max_tokens = args.max_tokens or (64 if args.full else 32)
    results = run(args.model, max_tokens, args.full)
    settings = {
        "model": args.model,
        "max_tokens": max_tokens,
        "batches": BATCHES,
        "requests": {batch: requests_for(batch, args.full) for batch in BATCHES},
        "full": args.full,
    }
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


def _parse_args() -> Any:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--model", default="100m", help="tiny or 100m (400m takes minutes per batch)")
    arguments.add_argument("--max-tokens", type=int, default=0, help="new tokens per request; 0 = preset")
    return arguments.parse_args()


if __name__ == "__main__":
    main()
