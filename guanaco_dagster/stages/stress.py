"""Stress-test a deployed model: concurrent streamed completions, latency percentiles, and the SLO."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import httpx
from pydantic import BaseModel, Field

# Short role-play openings, like the first turn of a beta conversation.
STRESS_PROMPTS = (
    "Bot's Persona: a cheerful pirate.\n####\nUser: Hello! How are you today?\nBot:",
    "Bot's Persona: a wise old wizard.\n####\nUser: Tell me a story, please.\nBot:",
    "Bot's Persona: a curious cat.\n####\nUser: What happened next?\nBot:",
    "Bot's Persona: a detective.\n####\nUser: Why do you think so?\nBot:",
)


class StressConfig(BaseModel):
    """The stress test's shape (`GUANACO_STRESS_*`); the pipeline resource and the settings inherit it."""

    stress_concurrency: int = Field(default=8, gt=0, description="Conversations in flight at once.")
    stress_requests: int = Field(default=32, gt=0, description="Streamed completions per stress test.")
    stress_max_tokens: int = Field(default=32, gt=0, description="Tokens generated per completion.")
    stress_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one completion, seconds.")


class Slo(BaseModel):
    """What a deployment must meet to reach users (`GUANACO_SLO_*`)."""

    slo_latency_p95_s: float = Field(default=10.0, gt=0, description="p95 latency of a completion, seconds.")
    slo_ttft_p95_s: float = Field(default=5.0, gt=0, description="p95 time to first token, seconds.")
    slo_max_error_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of failed requests allowed."
    )
    slo_max_bad_reply_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Output gate: share of replies that may be empty, the same reply to different prompts, "
        "or undecodable before the model is failed.",
    )


@dataclass
class LatencyReport:
    """Numbers from one stress test; latencies are per request, in seconds."""

    requests: int
    concurrency: int
    errors: int
    error_rate: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    output_tokens: int
    tokens_per_s: float
    wall_s: float
    error_samples: list[str] = field(default_factory=list)
    # The output gate: what the answered requests replied.
    empty_replies: int = 0
    repeated_replies: int = 0  # the same reply to a different prompt
    undecodable_replies: int = 0
    reply_samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class SloVerdict:
    passed: bool
    violations: list[str]

    def reason(self) -> str:
        return "; ".join(self.violations) if self.violations else "within SLO"


@dataclass
class _Sample:
    ok: bool
    latency_s: float = 0.0
    ttft_s: float = 0.0
    tokens: int = 0
    error: str = ""
    text: str = ""
    prompt: str = ""


async def _one_request(client: httpx.AsyncClient, url: str, body: dict) -> _Sample:
    started = time.perf_counter()
    first_token_at: float | None = None
    tokens = 0
    pieces: list[str] = []
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return _Sample(False, error=f"HTTP {response.status_code}: {response.text[:200]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                # With n > 1 the choices interleave: the reply a user sees is judged on the first one.
                text = next(
                    (c.get("text") or "" for c in chunk.get("choices") or [] if c.get("index", 0) == 0), ""
                )
                if text:
                    pieces.append(text)
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                if chunk.get("usage"):
                    tokens = chunk["usage"].get("completion_tokens", tokens)
    except (httpx.HTTPError, json.JSONDecodeError) as error:
        return _Sample(False, error=f"{type(error).__name__}: {error}")
    ended = time.perf_counter()
    reply = "".join(pieces)
    return _Sample(
        True, ended - started, (first_token_at or ended) - started, tokens, text=reply, prompt=body["prompt"]
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def is_undecodable(text: str) -> bool:
    """Mostly replacement or control characters: bytes that are no text (NaN weights, a wrong tokenizer)."""
    visible = [c for c in text if not c.isspace()]
    bad = sum(1 for c in visible if c == "\ufffd" or unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn"))
    return bool(visible) and bad * 2 > len(visible)


def _judge_replies(answered: list[_Sample]) -> dict[str, object]:
    """The output gate's counts over the answered requests."""
    prompts_by_reply: dict[str, set[str]] = {}
    for sample in answered:
        prompts_by_reply.setdefault(sample.text.strip(), set()).add(sample.prompt)
    empty = sum(1 for s in answered if not s.text.strip())
    repeated = sum(1 for s in answered if s.text.strip() and len(prompts_by_reply[s.text.strip()]) > 1)
    undecodable = sum(1 for s in answered if is_undecodable(s.text))
    samples = [s.text for s in answered[:3]]
    return {
        "empty_replies": empty,
        "repeated_replies": repeated,
        "undecodable_replies": undecodable,
        "reply_samples": samples,
    }


def _request_body(
    model: str, prompt: str, config: StressConfig, sampling: Mapping[str, object] | None
) -> dict:
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    if sampling is None:
        # No submission to imitate (benchmarks): generate the full length so every request does the same work.
        return {
            "model": model,
            "prompt": prompt,
            "max_tokens": config.stress_max_tokens,
            "temperature": 0.8,
            "ignore_eos": True,
            **stream,
        }
    # The submission's own sampling, as users get it, within the stress test's token budget.
    max_tokens = min(int(sampling.get("max_tokens") or config.stress_max_tokens), config.stress_max_tokens)
    return {**sampling, "model": model, "prompt": prompt, "max_tokens": max_tokens, **stream}


async def _run(
    endpoint_url: str,
    model: str,
    config: StressConfig,
    prompts: Sequence[str],
    sampling: Mapping[str, object] | None,
) -> LatencyReport:
    url = endpoint_url.rstrip("/") + "/completions"
    limit = asyncio.Semaphore(config.stress_concurrency)
    limits = httpx.Limits(max_connections=config.stress_concurrency)

    async with httpx.AsyncClient(timeout=config.stress_timeout_s, limits=limits) as client:

        async def bounded(i: int) -> _Sample:
            body = _request_body(model, prompts[i % len(prompts)], config, sampling)
            async with limit:
                return await _one_request(client, url, body)

        started = time.perf_counter()
        samples = await asyncio.gather(*(bounded(i) for i in range(config.stress_requests)))
        wall = time.perf_counter() - started
    ok = [s for s in samples if s.ok]
    latencies = [s.latency_s for s in ok]
    ttfts = [s.ttft_s for s in ok]
    tokens = sum(s.tokens for s in ok)
    errors = len(samples) - len(ok)
    return LatencyReport(
        requests=len(samples),
        concurrency=config.stress_concurrency,
        errors=errors,
        error_rate=errors / len(samples) if samples else 0.0,
        latency_p50_s=_percentile(latencies, 50),
        latency_p95_s=_percentile(latencies, 95),
        latency_p99_s=_percentile(latencies, 99),
        ttft_p50_s=_percentile(ttfts, 50),
        ttft_p95_s=_percentile(ttfts, 95),
        output_tokens=tokens,
        tokens_per_s=tokens / wall if wall > 0 else 0.0,
        wall_s=wall,
        error_samples=sorted({s.error for s in samples if not s.ok})[:5],
        **_judge_replies(ok),
    )


def run_stress_test(
    endpoint_url: str,
    model: str,
    config: StressConfig,
    prompts: Sequence[str] = STRESS_PROMPTS,
    sampling: Mapping[str, object] | None = None,
) -> LatencyReport:
    """Send `stress_requests` streamed completions, `stress_concurrency` at a time, and measure them.

    `prompts` are cycled through; `sampling` (the submission's `/v1/completions` fields) makes the requests
    the ones its users will send, and the output gate judges their replies.
    """
    return asyncio.run(_run(endpoint_url, model, config, prompts, sampling))


def evaluate_slo(report: LatencyReport, slo: Slo) -> SloVerdict:
    """Hold a report to the SLO; every violated bound is named with its measured value."""
    violations = []
    if report.requests and report.errors == report.requests:
        violations.append(f"all {report.requests} requests failed ({'; '.join(report.error_samples[:2])})")
    elif report.error_rate > slo.slo_max_error_rate:
        violations.append(f"error rate {report.error_rate:.1%} > {slo.slo_max_error_rate:.1%}")
    answered = report.requests - report.errors
    for count, what in (
        (report.empty_replies, "empty"),
        (report.repeated_replies, "the same reply to different prompts"),
        (report.undecodable_replies, "undecodable (not text)"),
    ):
        if answered and count > slo.slo_max_bad_reply_share * answered:
            violations.append(f"{count} of {answered} replies were {what}")
    if report.errors < report.requests:
        if report.latency_p95_s > slo.slo_latency_p95_s:
            violations.append(f"p95 latency {report.latency_p95_s:.2f} s > {slo.slo_latency_p95_s:.2f} s")
        if report.ttft_p95_s > slo.slo_ttft_p95_s:
            violations.append(
                f"p95 time to first token {report.ttft_p95_s:.2f} s > {slo.slo_ttft_p95_s:.2f} s"
            )
    return SloVerdict(not violations, violations)
