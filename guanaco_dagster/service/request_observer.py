"""Every request gets an id (`X-Request-ID`, kept when the caller sent a sane one), is counted and timed per
route template in Prometheus, and, with GUANACO_LOG_FORMAT=json, is logged as one JSON line."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from callers end up in logs and headers: only short, plain tokens are kept.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Requests that matched no route share one label, so scanners cannot create a series per path.
UNMATCHED_ROUTE = "<unmatched>"

REQUESTS = Counter(
    "guanaco_http_requests", "HTTP requests answered, per route template.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "guanaco_http_request_duration_seconds",
    "Time to answer an HTTP request, per route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

current_request_id: ContextVar[str | None] = ContextVar("guanaco_request_id", default=None)
request_logger = logging.getLogger("guanaco_dagster.service.requests")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is a plain token, else a new random one."""
    sent = dict(headers).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
    return sent if _SANE_REQUEST_ID.match(sent) else uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/models/{submission_id}`), never the raw path."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED_ROUTE


class RequestObserver:
    """ASGI middleware: request id in and out, Prometheus counts and latency, an optional JSON log line."""

    def __init__(self, app: ASGIApp, log_json: bool = False) -> None:
        self.app, self.log_json = app, log_json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != REQUEST_ID_HEADER.lower().encode()
                ]
                message = {
                    **message,
                    "headers": [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_s = time.perf_counter() - started
            method, route = scope["method"], route_template(scope)
            REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            LATENCY.labels(method=method, route=route).observe(duration_s)
            if self.log_json:
                request_logger.info(
                    "request",
                    extra={
                        "http": {
                            "method": method,
                            "route": route,
                            "status": status,
                            "duration_s": round(duration_s, 6),
                        }
                    },
                )
            current_request_id.reset(token)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request id, and any `http` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": current_request_id.get(),
        }
        line.update(getattr(record, "http", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def use_json_logs() -> None:
    """Log every first-party record (requests included) as a JSON line on stderr; safe to call twice."""
    package_logger = logging.getLogger("guanaco_dagster")
    if any(isinstance(handler, _StderrHandler) for handler in package_logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonLineFormatter())
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    # One line per record: the root logger's handlers (uvicorn's plain text) do not repeat it.
    package_logger.propagate = False
