"""Service: beta routing, the chat proxy's overhead, feedback ingestion and whole conversations, under load.

The embedded platform runs the HTTP service (uvicorn, one worker) on a throwaway PostgreSQL database
and deploys the tiny model through the pipeline. Then, over loopback, at increasing client concurrency:
1. routing — `POST /beta/conversations` (choose a deployed model, open a conversation);
2. chat — `POST /beta/conversations/{id}/messages` on fresh conversations, against calling the model
   server's `/v1/completions` directly with the same formatted prompt and sampling parameters. The
   service reports the model's own latency per reply, so its overhead is also measured per request
   (end-to-end minus model time: token counting, formatting, two database transactions, one hop);
3. feedback — `POST /beta/conversations/{id}/feedback`, one per conversation.
The load starts once the pipeline run has finished; the Dagster daemon keeps running, so the feedback
sensor launches summary runs while feedback arrives (as in production, but here on the same two cores,
as is the load generator). Afterwards: the time until the feedback summary covers every stored post,
and the errors the service logged, by exception type.
4. conversations — 200 whole beta conversations at once (start, 2 messages, feedback; nothing retried), on
   that PostgreSQL platform and then on a second platform with every default, so on the embedded SQLite
   store: throughput, 5xx answers, accepted feedback the store lost, and p50/p99 of the routes that never
   wait for a model (start, feedback), side by side.

    python -m benchmarks.bench_service [--full]
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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
    sample_model,
    submit,
    temporary_postgres_database,
)

NAME = "service"
QUICK = {"levels": (1, 8, 32, 64), "chat_levels": (1, 8, 32)}
FULL = {"levels": (1, 8, 32, 64, 128), "chat_levels": (1, 8, 32, 64)}
CONCURRENT_CONVERSATIONS = 200
MESSAGES_PER_CONVERSATION = 2
PERSONA = {"bot_name": "Nova", "user_name": "You", "memory": "A cheerful space pirate.", "prompt": "On deck."}
MESSAGE = "Hello! How are you today?"
SUMMARY_TIMEOUT_S = 120.0


def requests_at(concurrency: int, full: bool) -> int:
    """Requests per concurrency level: enough for percentiles, bounded for a 2-core machine."""
    return max(64 if full else 32, (4 if full else 2) * concurrency)


def conversation_samples(full: bool) -> int:
    """Repetitions of the 200-conversation load on each store (about 30-60 s each on 2 cores)."""
    return 3 if full else 2


def chat_requests_at(concurrency: int, full: bool) -> int:
    return max(16 if full else 8, 2 * concurrency)


@dataclass
class LoadResult:
    """Latencies of the successful requests, errors and wall time of one load level."""

    name: str
    concurrency: int
    requests: int
    wall_s: float
    latencies_s: list[float]
    errors: int
    error_samples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "requests_per_s": self.requests / self.wall_s if self.wall_s else 0.0,
            "latency_p50_s": percentile(self.latencies_s, 50),
            "latency_p99_s": percentile(self.latencies_s, 99),
            "errors": self.errors,
            "error_samples": self.error_samples,
            **self.extra,
        }


async def _load(
    name: str,
    count: int,
    concurrency: int,
    call: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
    base_url: str,
    headers: dict[str, str] | None = None,
    on_response: Callable[[int, httpx.Response, float], None] | None = None,
) -> LoadResult:
    """`count` requests, `concurrency` in flight, each on its own index."""
    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60, limits=limits) as client:

        async def one(index: int) -> None:
            async with limit:
                started = time.perf_counter()
                try:
                    response = await call(client, index)
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    return
                latency = time.perf_counter() - started
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
                    return
                latencies.append(latency)
                if on_response is not None:
                    on_response(index, response, latency)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        wall = time.perf_counter() - started
    return LoadResult(name, concurrency, count, wall, latencies, len(errors), sorted(set(errors))[:3])


def load(*args: Any, **kwargs: Any) -> LoadResult:
    """Run one load level to completion (see `_load`)."""
    return asyncio.run(_load(*args, **kwargs))


def bench_routing(
    service_url: str, token: str, levels: tuple[int, ...], full: bool
) -> tuple[list, list[str]]:
    """Open conversations at each level; returns the results and every conversation id, in order."""
    conversation_ids: list[str] = []
    results = []
    for concurrency in levels:
        offset = len(conversation_ids)

        def call(client: httpx.AsyncClient, index: int, offset: int = offset) -> Awaitable[httpx.Response]:
            return client.post(
                "/beta/conversations", json={"user_id": f"bench-user-{offset + index}", **PERSONA}
            )

        ids: dict[int, str] = {}
        result = load(
            "routing: POST /beta/conversations",
            requests_at(concurrency, full),
            concurrency,
            call,
            service_url,
            {"Authorization": f"Bearer {token}"},
            lambda index, response, _latency, ids=ids: ids.__setitem__(
                index, response.json()["conversation_id"]
            ),
        )
        conversation_ids += [ids[index] for index in sorted(ids)]
        results.append(result)
    return results, conversation_ids


def direct_prompt(endpoint_url: str, served_name: str) -> tuple[str, dict[str, Any]]:
    """The prompt the service builds for a fresh conversation's first message, and the sampling body."""
    from guanaco_dagster.beta.model_client import ModelClient
    from guanaco_dagster.submissions.formatter import (
        ChatTurn,
        GenerationParams,
        PromptFormatter,
        format_prompt,
    )

    params = GenerationParams()
    with ModelClient(endpoint_url, served_name) as client:
        prompt = format_prompt(
            PromptFormatter(),
            memory=PERSONA["memory"],
            prompt=PERSONA["prompt"],
            bot_name=PERSONA["bot_name"],
            user_name=PERSONA["user_name"],
            history=[ChatTurn(sender="user", message=MESSAGE)],
            count_tokens=client.count_tokens,
            max_input_tokens=params.max_input_tokens,
        )
    return prompt, params.to_completion_kwargs()


def bench_chat(
    service_url: str,
    token: str,
    endpoint_url: str,
    served_name: str,
    conversation_ids: list[str],
    levels: tuple[int, ...],
    full: bool,
) -> list[dict[str, Any]]:
    """Service chat vs direct completions at each level, back to back."""
    prompt, sampling = direct_prompt(endpoint_url, served_name)
    model_root = endpoint_url.rstrip("/")
    comparisons = []
    next_conversation = 0
    for concurrency in levels:
        count = chat_requests_at(concurrency, full)
        batch = conversation_ids[next_conversation : next_conversation + count]
        next_conversation += count
        model_seconds: list[float] = []
        overheads: list[float] = []

        def on_reply(
            _index: int,
            response: httpx.Response,
            latency: float,
            model_seconds: list[float] = model_seconds,
            overheads: list[float] = overheads,
        ) -> None:
            model_s = response.json()["latency_s"]
            model_seconds.append(model_s)
            overheads.append(latency - model_s)

        def via_service(
            client: httpx.AsyncClient, index: int, batch: list[str] = batch
        ) -> Awaitable[httpx.Response]:
            return client.post(f"/beta/conversations/{batch[index]}/messages", json={"message": MESSAGE})

        def direct(client: httpx.AsyncClient, _index: int) -> Awaitable[httpx.Response]:
            return client.post("/completions", json={"model": served_name, "prompt": prompt, **sampling})

        service = load(
            "chat via service",
            count,
            concurrency,
            via_service,
            service_url,
            {"Authorization": f"Bearer {token}"},
            on_reply,
        )
        model = load("chat direct to model", count, concurrency, direct, model_root)
        service.extra = {
            "model_latency_p50_s": percentile(model_seconds, 50),
            "overhead_p50_s": percentile(overheads, 50),
            "overhead_p99_s": percentile(overheads, 99),
        }
        comparisons.append(
            {
                "concurrency": concurrency,
                "service": service.row(),
                "direct": model.row(),
                "latency_p50_ratio_service_to_direct": ratio(
                    percentile(service.latencies_s, 50), percentile(model.latencies_s, 50)
                ),
                "throughput_ratio_service_to_direct": ratio(
                    service.row()["requests_per_s"], model.row()["requests_per_s"]
                ),
            }
        )
    return comparisons


def bench_feedback(
    service_url: str, token: str, conversation_ids: list[str], levels: tuple[int, ...], full: bool
) -> list[LoadResult]:
    """One feedback post per conversation at each level (distinct conversations throughout)."""
    results = []
    next_conversation = 0
    for concurrency in levels:
        count = min(requests_at(concurrency, full), len(conversation_ids) - next_conversation)
        batch = conversation_ids[next_conversation : next_conversation + count]
        next_conversation += count

        def call(
            client: httpx.AsyncClient, index: int, batch: list[str] = batch
        ) -> Awaitable[httpx.Response]:
            return client.post(
                f"/beta/conversations/{batch[index]}/feedback",
                json={
                    "thumbs_up": index % 3 != 0,
                    "text": "Fun, stayed in character",
                    "idempotency_key": batch[index],
                },
            )

        results.append(
            load(
                "feedback: POST …/feedback",
                count,
                concurrency,
                call,
                service_url,
                {"Authorization": f"Bearer {token}"},
            )
        )
    return results


def print_results(routing: list[LoadResult], chat: list[dict[str, Any]], feedback: list[LoadResult]) -> None:
    rows = []
    for result in [*routing, *feedback]:
        row = result.row()
        rows.append(
            [
                row["name"],
                row["concurrency"],
                row["requests"],
                fmt(row["requests_per_s"], 1),
                fmt(row["latency_p50_s"] * 1000, 1),
                fmt(row["latency_p99_s"] * 1000, 1),
                row["errors"],
            ]
        )
    print_table(
        "Service on PostgreSQL — beta routing and feedback ingestion (loopback, uvicorn, 1 worker)",
        ["route", "clients", "requests", "req/s", "p50 ms", "p99 ms", "errors"],
        rows,
    )
    chat_rows = []
    for comparison in chat:
        service, direct = comparison["service"], comparison["direct"]
        for path, row in (("via service", service), ("direct to model", direct)):
            is_service = row is service
            chat_rows.append(
                [
                    comparison["concurrency"],
                    path,
                    row["requests"],
                    fmt(row["requests_per_s"], 1),
                    fmt(row["latency_p50_s"] * 1000, 0),
                    fmt(row["latency_p99_s"] * 1000, 0),
                    row["errors"],
                    fmt_ratio(comparison["latency_p50_ratio_service_to_direct"]) if is_service else "1.00×",
                    fmt(row["overhead_p50_s"] * 1000, 1) if is_service else "",
                    fmt(row["overhead_p99_s"] * 1000, 1) if is_service else "",
                ]
            )
    print_table(
        "Chat proxy — service /beta/…/messages vs the model's /v1/completions directly (same prompt)",
        [
            "clients",
            "path",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "p50 ÷ direct",
            "overhead p50 ms",
            "overhead p99 ms",
        ],
        chat_rows,
        left_columns=2,
        caption="overhead = service end-to-end minus the model time the service measured for that reply "
        "(token count, prompt formatting, two transactions, one extra hop).",
    )


def _wait_for_pipeline_run_end(platform: Any, submission_id: str, timeout_s: float = 120.0) -> None:
    """`deployed` is set inside the last step: let that run finish before loading the service."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [run for run in dagster_runs(platform, submission_id) if run.job == "submission_pipeline"]
        if runs and runs[-1].ended_at is not None:
            return
        time.sleep(0.5)


def service_log_errors(log_path: Path) -> dict[str, int]:
    """Exceptions the service logged (first line of each), counted; empty when none."""
    if not log_path.is_file():
        return {}
    errors = re.findall(
        r"^([A-Za-z_][\w.]*(?:Error|Exception)[\w]*: .{0,90})", log_path.read_text(errors="replace"), re.M
    )
    return dict(Counter(errors).most_common(5))


def deploy_tiny_model(platform: Any, store: Any, model: Any) -> tuple[str, str, str]:
    """Submit the model to the platform and wait until it serves; (submission id, endpoint, served name)."""
    from guanaco_dagster.submissions.lifecycle import Status
    from guanaco_dagster.submissions.submissions import get_submission
    from guanaco_dagster.testing.watch import wait_for_outcome

    submission_id, _ = submit(store, model.repo_id)
    with step("deploying the tiny model through the pipeline …"):
        status = wait_for_outcome(store, submission_id, 600, health_check=platform.check_health)
    with store.session() as session:
        submission = get_submission(session, submission_id)
        if status != Status.DEPLOYED:
            raise SystemExit(f"{submission_id} {status}: {submission.failure_reason}")
        endpoint_url, served_name = submission.endpoint_url, submission.served_model_name
    with step("waiting for the pipeline run to finish …"):
        _wait_for_pipeline_run_end(platform, submission_id)
    return submission_id, endpoint_url, served_name


def bench_conversations(platform: Any, store: Any, samples: int) -> dict[str, Any]:
    """The 200-conversation load against the platform's service, `samples` times; per-sample rows."""
    from guanaco_dagster.testing.conversation_load import (
        MESSAGE,
        ConversationLoadConfig,
        run_conversation_load,
    )

    rows = []
    for sample in range(samples):
        config = ConversationLoadConfig(
            base_url=platform.service_url,
            beta_token=platform.beta_token,
            conversations=CONCURRENT_CONVERSATIONS,
            concurrency=CONCURRENT_CONVERSATIONS,
            messages=MESSAGES_PER_CONVERSATION,
        )
        with step(f"{CONCURRENT_CONVERSATIONS} concurrent conversations, sample {sample + 1}/{samples} …"):
            report = run_conversation_load(config, store)
        rows.append(
            {
                "conversations": CONCURRENT_CONVERSATIONS,
                "completed": report.completed,
                "wall_s": report.wall_s,
                "conversations_per_s": report.conversations_per_s,
                "server_errors_5xx": report.server_errors,
                "transport_errors": report.transport_errors,
                "statuses": {str(code): count for code, count in sorted(report.statuses.items())},
                "feedback_accepted": report.accepted_feedback,
                "feedback_stored": report.stored_feedback,
                "feedback_lost": report.lost_feedback,
                "non_model_p50_s": percentile(report.non_model_latencies_s, 50),
                "non_model_p99_s": percentile(report.non_model_latencies_s, 99),
                "message_p50_s": percentile(report.latencies_s[MESSAGE], 50),
                "error_samples": report.error_samples,
            }
        )
    return {
        "samples": rows,
        "service_log_errors": service_log_errors(platform.logs_dir / "service.log"),
    }


def conversation_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and minimums over the samples; errors and lost feedback summed."""

    def median(key: str) -> float:
        return statistics.median(row[key] for row in samples)

    return {
        "samples": len(samples),
        "conversations_per_s_median": median("conversations_per_s"),
        "conversations_per_s_min": min(row["conversations_per_s"] for row in samples),
        "server_errors_5xx": sum(row["server_errors_5xx"] for row in samples),
        "transport_errors": sum(row["transport_errors"] for row in samples),
        "feedback_lost": sum(row["feedback_lost"] or 0 for row in samples),
        "non_model_p50_s_median": median("non_model_p50_s"),
        "non_model_p50_s_min": min(row["non_model_p50_s"] for row in samples),
        "non_model_p99_s_median": median("non_model_p99_s"),
        "non_model_p99_s_min": min(row["non_model_p99_s"] for row in samples),
        "message_p50_s_median": median("message_p50_s"),
    }


def _ms_median_min(summary: dict[str, Any], key: str) -> str:
    return f"{summary[key + '_median'] * 1000:.0f} ({summary[key + '_min'] * 1000:.0f})"


def print_conversations(by_store: dict[str, dict[str, Any]]) -> None:
    rows = []
    for store_name, result in by_store.items():
        summary = result["summary"]
        rows.append(
            [
                store_name,
                summary["samples"],
                f"{summary['conversations_per_s_median']:.1f} ({summary['conversations_per_s_min']:.1f})",
                summary["server_errors_5xx"],
                summary["transport_errors"],
                summary["feedback_lost"],
                _ms_median_min(summary, "non_model_p50_s"),
                _ms_median_min(summary, "non_model_p99_s"),
                fmt(summary["message_p50_s_median"] * 1000, 0),
            ]
        )
    print_table(
        f"{CONCURRENT_CONVERSATIONS} concurrent beta conversations (start, {MESSAGES_PER_CONVERSATION} "
        "messages, feedback) — platform defaults, uvicorn 1 worker",
        [
            "store",
            "samples",
            "conv/s median (min)",
            "5xx",
            "transport errors",
            "feedback lost",
            "non-model p50 ms median (min)",
            "non-model p99 ms median (min)",
            "message p50 ms",
        ],
        rows,
        caption="non-model routes: start and feedback (the message route waits for the model). Nothing "
        "is retried; feedback lost = accepted (200) minus rows in the store. The Dagster daemon runs "
        "throughout.",
    )


def run(full: bool) -> dict[str, Any]:
    """Deploy the tiny model on a PostgreSQL platform, load each route, then load whole conversations on it
    and on a platform with every default (SQLite)."""
    from guanaco_dagster.store.database import Store
    from guanaco_dagster.testing.watch import wait_for_summary

    preset = FULL if full else QUICK
    samples = conversation_samples(full)
    model = sample_model("tiny")
    platform_overrides = {"stress_requests": 8, "stress_concurrency": 4}  # a quicker deployment only
    conversations: dict[str, dict[str, Any]] = {}
    with hub_serving([model]) as hub:
        with (
            temporary_postgres_database() as database_url,
            embedded_platform(
                fresh_home(NAME), hub.endpoint, service=True, database_url=database_url, **platform_overrides
            ) as platform,
        ):
            store = Store(database_url)
            submission_id, endpoint_url, served_name = deploy_tiny_model(platform, store, model)
            token = platform.beta_token
            with step("routing load …"):
                routing, conversation_ids = bench_routing(platform.service_url, token, preset["levels"], full)
            with step("chat load: via the service, then direct …"):
                chat = bench_chat(
                    platform.service_url,
                    token,
                    endpoint_url,
                    served_name,
                    conversation_ids,
                    preset["chat_levels"],
                    full,
                )
            with step("feedback load …"):
                feedback = bench_feedback(
                    platform.service_url, token, conversation_ids, preset["levels"], full
                )
            print_results(routing, chat, feedback)
            logged_errors = service_log_errors(platform.logs_dir / "service.log")
            stored = sum(result.requests - result.errors for result in feedback)
            load_ended = time.perf_counter()
            catch_up_s: float | None = None
            with step(f"waiting for the feedback summary to cover {stored} posts …"):
                try:
                    wait_for_summary(store, submission_id, stored, timeout_s=SUMMARY_TIMEOUT_S)
                    catch_up_s = time.perf_counter() - load_ended
                except TimeoutError:
                    pass
            conversations["PostgreSQL"] = bench_conversations(platform, store, samples)
        with embedded_platform(
            fresh_home(f"{NAME}-sqlite"), hub.endpoint, service=True, **platform_overrides
        ) as platform:
            store = Store(platform.settings.resolved_database_url)
            deploy_tiny_model(platform, store, model)
            conversations["SQLite (embedded default)"] = bench_conversations(platform, store, samples)
    for result in conversations.values():
        result["summary"] = conversation_summary(result["samples"])
    print_conversations(conversations)
    if logged_errors:
        console.print(
            "[red]errors in the service log:[/] "
            + "; ".join(f"{count}× {error}" for error, count in logged_errors.items())
        )
    console.print(
        f"feedback summary covered all {stored} stored posts {catch_up_s:.1f} s after the load ended."
        if catch_up_s is not None
        else f"[red]feedback summary did not cover {stored} posts within {SUMMARY_TIMEOUT_S:.0f} s[/]"
    )
    return {
        "model": model.label,
        "database": "PostgreSQL 127.0.0.1:5432 (throwaway database)",
        "routing": [result.row() for result in routing],
        "chat": chat,
        "feedback": [result.row() for result in feedback],
        "feedback_stored": stored,
        "summary_catch_up_after_load_s": catch_up_s,
        "service_log_errors": logged_errors,
        "conversations": conversations,
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    machine = machine_info()
    console.rule("[bold]Benchmark: service under load (PostgreSQL; conversations also on SQLite)")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    results = run(args.full)
    preset = FULL if args.full else QUICK
    settings = {
        **{key: list(value) for key, value in preset.items()},
        "requests": {c: requests_at(c, args.full) for c in preset["levels"]},
        "chat_requests": {c: chat_requests_at(c, args.full) for c in preset["chat_levels"]},
        "concurrent_conversations": CONCURRENT_CONVERSATIONS,
        "messages_per_conversation": MESSAGES_PER_CONVERSATION,
        "conversation_samples": conversation_samples(args.full),
        "full": args.full,
    }
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


if __name__ == "__main__":
    main()
