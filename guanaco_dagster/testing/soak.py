"""A bounded soak of the service's beta feedback path: concurrent app clients, deliberate retries, and a count
of accepted versus stored feedback (which must be equal: every acknowledged post stored exactly once).

Each client repeatedly starts a routed conversation (optionally chats) and posts feedback with an
idempotency key. Some posts are retried after their answer (a client that missed the response), some are
sent twice at once (a double tap), and posts that fail are retried with the same key, as a real client would.
Bounded by a post count and a wall-clock limit; loopback addresses only.

    python -m guanaco_dagster.testing.soak --url http://127.0.0.1:8080 --clients 50 --posts 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from ipaddress import ip_address
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Feedback

FEEDBACK_TEXTS = (
    (True, "Fun and in character."),
    (False, "It repeated itself."),
    (True, "Loved the story!"),
    (False, "Too short, made no sense."),
)
TRANSIENT_ATTEMPTS = 4


class SoakError(ValueError):
    """The soak cannot run as configured."""


@dataclass(frozen=True)
class SoakConfig:
    """What to send and the bounds of the soak."""

    base_url: str
    beta_token: str
    clients: int = 50
    feedback_posts: int = 2000
    max_duration_s: float = 60.0
    # Every Nth post is sent again after its answer, every Mth twice at once; 0 turns either off.
    retry_every: int = 5
    double_tap_every: int = 11
    # Every Kth conversation sends one chat message first (it reaches the model); 0 = feedback only.
    chat_every: int = 0
    request_timeout_s: float = 30.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def key_prefix(self) -> str:
        """Every idempotency key of this soak starts with this, so its rows can be counted."""
        return f"soak-{self.run_id}-"


@dataclass
class SoakReport:
    """What the soak sent, what the service acknowledged, and what the store holds."""

    run_id: str
    clients: int
    planned_posts: int
    conversations: int = 0
    chat_messages: int = 0
    requests: int = 0
    accepted: int = 0
    accepted_thumbs_up: int = 0
    accepted_by_submission: dict[str, int] = field(default_factory=dict)
    retries_sent: int = 0
    retries_acknowledged_as_stored_already: int = 0
    # A retry or twin answered 409 "already has feedback" although its key was the stored one (its twin won).
    retries_refused: int = 0
    inconsistent_answers: int = 0
    # Failed attempts that a retry with the same body then got through (e.g. a keep-alive connection the
    # server closed just as it was reused), and requests that failed for good.
    transient_errors: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    stored: int | None = None
    stored_more_than_once: int | None = None
    stopped_by_time_limit: bool = False
    wall_s: float = 0.0

    @property
    def feedback_per_s(self) -> float:
        return self.accepted / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def lossless(self) -> bool:
        """Accepted equals stored, nothing stored twice, every answer about a key consistent."""
        return (
            self.stored == self.accepted
            and self.stored_more_than_once == 0
            and self.inconsistent_answers == 0
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "feedback_per_s": round(self.feedback_per_s, 1), "lossless": self.lossless}


def require_loopback(url: str) -> None:
    """Refuse anything but a loopback address: a soak is a load test, never aimed at someone else."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SoakError(f"the soak only runs against loopback addresses, not {host!r}")


@dataclass
class _Tally:
    """Shared by the client tasks (one event loop, so no locks)."""

    next_post: int = 0
    feedback_ids: dict[str, int] = field(default_factory=dict)
    first_stores: Counter[str] = field(default_factory=Counter)
    thumbs_up: set[str] = field(default_factory=set)
    submission_of: dict[str, str] = field(default_factory=dict)


class _Soak:
    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.report = SoakReport(config.run_id, config.clients, config.feedback_posts)
        self.tally = _Tally()
        self.deadline = 0.0

    def _error(self, what: str, transient: bool = False) -> None:
        if transient:
            self.report.transient_errors += 1
        else:
            self.report.errors += 1
        if len(self.report.error_samples) < 5:
            self.report.error_samples.append(what)

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict) -> httpx.Response | None:
        """POST with retries on transport errors and 5xx (same body, so the same idempotency key)."""
        for attempt in range(TRANSIENT_ATTEMPTS):
            self.report.requests += 1
            last_attempt = attempt == TRANSIENT_ATTEMPTS - 1
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError as error:
                self._error(f"{path}: {type(error).__name__}: {error}", transient=not last_attempt)
            else:
                if response.status_code < 500:
                    return response
                self._error(f"{path}: HTTP {response.status_code}: {response.text[:200]}", not last_attempt)
            await asyncio.sleep(0.05 * 2**attempt)
        return None

    def _record_answer(self, key: str, response: httpx.Response | None, thumbs_up: bool, retry: bool) -> None:
        if response is None:
            return
        if response.status_code == 409 and retry:
            self.report.retries_refused += 1
            return
        if response.status_code != 200:
            self._error(f"feedback {key}: HTTP {response.status_code}: {response.text[:200]}")
            return
        answer = response.json()
        known = self.tally.feedback_ids.setdefault(key, answer["feedback_id"])
        if known != answer["feedback_id"]:
            self.report.inconsistent_answers += 1
        if answer["stored"]:
            self.tally.first_stores[key] += 1
            if self.tally.first_stores[key] > 1:
                self.report.inconsistent_answers += 1  # two posts of one key both claim to have stored it
        elif retry:
            self.report.retries_acknowledged_as_stored_already += 1
        if thumbs_up:
            self.tally.thumbs_up.add(key)

    async def _one_post(self, client: httpx.AsyncClient, client_index: int, post_index: int) -> None:
        config = self.config
        started = await self._post(
            client,
            "/beta/conversations",
            {"user_id": f"{config.key_prefix}user-{client_index}", "bot_name": "Soak", "user_name": "You"},
        )
        if started is None or started.status_code != 200:
            if started is not None:
                self._error(f"conversation: HTTP {started.status_code}: {started.text[:200]}")
            return
        conversation = started.json()
        conversation_id = conversation["conversation_id"]
        self.report.conversations += 1
        if config.chat_every and post_index % config.chat_every == 0:
            chat = await self._post(
                client, f"/beta/conversations/{conversation_id}/messages", {"message": "Hello there!"}
            )
            if chat is not None and chat.status_code == 200:
                self.report.chat_messages += 1
            elif chat is not None:
                self._error(f"chat: HTTP {chat.status_code}: {chat.text[:200]}")
        thumbs_up, text = FEEDBACK_TEXTS[post_index % len(FEEDBACK_TEXTS)]
        key = f"{config.key_prefix}{client_index}-{post_index}"
        body = {"thumbs_up": thumbs_up, "text": text, "idempotency_key": key}
        path = f"/beta/conversations/{conversation_id}/feedback"
        self.tally.submission_of[key] = conversation["submission_id"]
        if config.double_tap_every and post_index % config.double_tap_every == 0:
            self.report.retries_sent += 1
            answers = await asyncio.gather(self._post(client, path, body), self._post(client, path, body))
            for answer in answers:
                self._record_answer(key, answer, thumbs_up, retry=True)  # either twin may lose the race
        else:
            self._record_answer(key, await self._post(client, path, body), thumbs_up, retry=False)
        if config.retry_every and post_index % config.retry_every == 0:
            self.report.retries_sent += 1
            self._record_answer(key, await self._post(client, path, body), thumbs_up, retry=True)

    async def _client(self, client: httpx.AsyncClient, client_index: int) -> None:
        while True:
            if time.monotonic() > self.deadline:
                self.report.stopped_by_time_limit = True
                return
            if self.tally.next_post >= self.config.feedback_posts:
                return
            post_index = self.tally.next_post
            self.tally.next_post += 1
            await self._one_post(client, client_index, post_index)

    async def run(self) -> SoakReport:
        config = self.config
        started = time.monotonic()
        self.deadline = started + config.max_duration_s
        limits = httpx.Limits(
            max_connections=config.clients * 2, max_keepalive_connections=config.clients * 2
        )
        headers = {"Authorization": f"Bearer {config.beta_token}"}
        async with httpx.AsyncClient(
            base_url=config.base_url, headers=headers, timeout=config.request_timeout_s, limits=limits
        ) as client:
            await asyncio.gather(*(self._client(client, index) for index in range(config.clients)))
        self.report.wall_s = round(time.monotonic() - started, 3)
        accepted = set(self.tally.feedback_ids)
        self.report.accepted = len(accepted)
        self.report.accepted_thumbs_up = len(self.tally.thumbs_up & accepted)
        self.report.accepted_by_submission = dict(
            sorted(Counter(self.tally.submission_of[key] for key in accepted).items())
        )
        return self.report


def count_stored(store: Store, key_prefix: str) -> tuple[int, int]:
    """(feedback rows whose idempotency key has `key_prefix`, keys stored more than once)."""
    pattern = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    matching = Feedback.idempotency_key.like(pattern, escape="\\")
    with store.session() as session:
        stored = session.scalar(select(func.count()).select_from(Feedback).where(matching)) or 0
        repeated = (
            select(Feedback.idempotency_key).where(matching).group_by(Feedback.idempotency_key)
        ).having(func.count() > 1)
        stored_twice = session.scalar(select(func.count()).select_from(repeated.subquery())) or 0
    return stored, stored_twice


def run_soak(config: SoakConfig, store: Store | None = None) -> SoakReport:
    """Run the soak; with `store` (the service's database), count what was stored."""
    require_loopback(config.base_url)
    if config.clients < 1 or config.feedback_posts < 0 or config.max_duration_s <= 0:
        raise SoakError("clients must be ≥ 1, posts ≥ 0 and the time limit > 0")
    report = asyncio.run(_Soak(config).run())
    if store is not None:
        report.stored, report.stored_more_than_once = count_stored(store, config.key_prefix)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: run a soak and print its report as JSON; exit 1 unless accepted == stored."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="The service (loopback only).")
    parser.add_argument("--token", default=os.environ.get("GUANACO_BETA_SERVICE_TOKEN"), help="Beta token.")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--posts", type=int, default=2000, help="Feedback posts in total.")
    parser.add_argument("--duration-s", type=float, default=60.0, help="Wall-clock limit.")
    parser.add_argument("--chat-every", type=int, default=0, help="Chat once in every Nth conversation.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("GUANACO_DATABASE_URL"),
        help="The service's store, to count what was stored (default: GUANACO_DATABASE_URL).",
    )
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a beta service token is required (--token or GUANACO_BETA_SERVICE_TOKEN)")
    config = SoakConfig(
        base_url=args.url,
        beta_token=args.token,
        clients=args.clients,
        feedback_posts=args.posts,
        max_duration_s=args.duration_s,
        chat_every=args.chat_every,
    )
    store = Store(args.database_url) if args.database_url else None
    report = run_soak(config, store)
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.lossless or store is None else 1


if __name__ == "__main__":
    sys.exit(main())
