"""A bounded load of whole beta conversations through the service's HTTP routes, as the app would send them.

Every conversation is started, sends a few messages (each reaches the model) and leaves feedback with an
idempotency key; all of them run at once (up to `concurrency`). Nothing is retried, so every 5xx a user
would have met is counted. Latencies are kept per route, and accepted feedback is compared with what the
store holds. Loopback addresses only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from guanaco_dagster.store.database import Store
from guanaco_dagster.testing.soak import count_stored, require_loopback

START, MESSAGE, FEEDBACK = "start", "message", "feedback"
# The message route proxies to the model, so its time is mostly the model's; the others are the service's own.
NON_MODEL_ROUTES = (START, FEEDBACK)
USER_MESSAGES = ("Hello! Who are you?", "Tell me about your ship.", "What happens next?")


@dataclass(frozen=True)
class ConversationLoadConfig:
    """How many conversations, how many at once, and how many messages each."""

    base_url: str
    beta_token: str
    conversations: int = 200
    concurrency: int = 200
    messages: int = 2
    request_timeout_s: float = 120.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def key_prefix(self) -> str:
        """Every feedback idempotency key of this load starts with this, so its rows can be counted."""
        return f"load-{self.run_id}-"


@dataclass
class ConversationLoadReport:
    """What the load sent, how each route answered, and what the store kept."""

    config: ConversationLoadConfig
    completed: int = 0
    wall_s: float = 0.0
    latencies_s: dict[str, list[float]] = field(
        default_factory=lambda: {r: [] for r in (START, MESSAGE, FEEDBACK)}
    )
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    accepted_feedback: int = 0
    stored_feedback: int | None = None

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status."""
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def lost_feedback(self) -> int | None:
        """Accepted feedback the store does not hold (None when the store was not counted)."""
        return None if self.stored_feedback is None else self.accepted_feedback - self.stored_feedback

    @property
    def conversations_per_s(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def non_model_latencies_s(self) -> list[float]:
        """Latencies of the routes that never wait for a model (start, feedback)."""
        return [latency for route in NON_MODEL_ROUTES for latency in self.latencies_s[route]]

    def non_model_percentile_s(self, q: int) -> float:
        """The q-th percentile (1-99) of the non-model routes' latency; 0 when none succeeded."""
        values = self.non_model_latencies_s
        if len(values) < 2:
            return values[0] if values else 0.0
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class _Load:
    def __init__(self, config: ConversationLoadConfig) -> None:
        self.config = config
        self.report = ConversationLoadReport(config)

    def _failed(self, what: str) -> None:
        if len(self.report.error_samples) < 5:
            self.report.error_samples.append(what)

    async def _post(self, client: httpx.AsyncClient, route: str, path: str, body: dict) -> dict | None:
        """One POST, timed; the answer's JSON on 200, None (counted) otherwise."""
        started = time.perf_counter()
        try:
            response = await client.post(path, json=body)
        except httpx.HTTPError as error:
            self.report.transport_errors += 1
            self._failed(f"{route}: {type(error).__name__}: {error}")
            return None
        self.report.statuses[response.status_code] += 1
        if response.status_code != 200:
            self._failed(f"{route}: HTTP {response.status_code}: {response.text[:200]}")
            return None
        self.report.latencies_s[route].append(time.perf_counter() - started)
        return response.json()

    async def _conversation(self, client: httpx.AsyncClient, index: int, slots: asyncio.Semaphore) -> None:
        config = self.config
        async with slots:
            started = await self._post(
                client, START, "/beta/conversations", {"user_id": f"{config.key_prefix}user-{index}"}
            )
            if started is None:
                return
            path = f"/beta/conversations/{started['conversation_id']}"
            for turn in range(config.messages):
                message = USER_MESSAGES[turn % len(USER_MESSAGES)]
                if await self._post(client, MESSAGE, f"{path}/messages", {"message": message}) is None:
                    return
            body = {
                "thumbs_up": index % 3 != 0,
                "text": "Stayed in character.",
                "idempotency_key": f"{config.key_prefix}{index}",
            }
            answer = await self._post(client, FEEDBACK, f"{path}/feedback", body)
            if answer is not None:
                self.report.accepted_feedback += 1
                self.report.completed += 1

    async def run(self) -> ConversationLoadReport:
        config = self.config
        slots = asyncio.Semaphore(config.concurrency)
        # No keep-alive: on a starved machine a reused connection can meet uvicorn's 5 s idle close, and
        # the load would count that client-side race as a failure of the service.
        limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=0)
        headers = {"Authorization": f"Bearer {config.beta_token}"}
        started = time.perf_counter()
        async with httpx.AsyncClient(
            base_url=config.base_url, headers=headers, timeout=config.request_timeout_s, limits=limits
        ) as client:
            await asyncio.gather(*(self._conversation(client, i, slots) for i in range(config.conversations)))
        self.report.wall_s = time.perf_counter() - started
        return self.report


def run_conversation_load(
    config: ConversationLoadConfig, store: Store | None = None
) -> ConversationLoadReport:
    """Run the load to completion; with `store` (the service's database), count the feedback it kept."""
    require_loopback(config.base_url)
    if config.conversations < 1 or config.concurrency < 1 or config.messages < 0:
        raise ValueError("conversations and concurrency must be ≥ 1, messages ≥ 0")
    report = asyncio.run(_Load(config).run())
    if store is not None:
        report.stored_feedback, _stored_twice = count_stored(store, config.key_prefix)
    return report
