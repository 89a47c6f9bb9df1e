"""The Guanaco HTTP service: FastAPI app factory, request size limit, health route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, HTTPException
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guanaco_dagster.beta.health_watcher import watching_health
from guanaco_dagster.feedback.categories import warm_up
from guanaco_dagster.service.dependencies import SessionDep
from guanaco_dagster.service.errors import install_error_handlers
from guanaco_dagster.service.request_observer import RequestObserver, use_json_logs
from guanaco_dagster.service.routes import (
    battles,
    beta,
    beta_page,
    developers,
    feedback,
    leaderboard,
    metrics,
    models,
    openai_proxy,
    server_logs,
)
from guanaco_dagster.settings import Settings, load_settings
from guanaco_dagster.store.database import SERVICE_WORKER_THREADS, Store


class BodySizeLimit:
    """Answer 413 to requests whose body exceeds `max_bytes`, declared or streamed, before routes see them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = f'{{"detail": "request body over {self.max_bytes} bytes"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    # An HTTPException: FastAPI turns anything else raised while it reads a body into a 400.
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # More threads than concurrent requests: a sync route's response is validated on a second thread
    # while its transaction is still open, so a full pool deadlocks (fastapi/fastapi#3205).
    anyio.to_thread.current_default_thread_limiter().total_tokens = SERVICE_WORKER_THREADS
    # Deployed model servers are checked while the service runs, so routing skips dead ones.
    # One connection pool for every request the OpenAI-compatible routes relay to model servers.
    # Feedback is categorised as it arrives: load the embedding model now, not on the first post.
    settings: Settings = app.state.settings
    if settings.beta_service_token is not None or settings.beta_page_enabled:
        warm_up(settings.feedback_category_method)
    async with openai_proxy.model_server_client() as app.state.model_http:
        with watching_health(app.state.store):
            yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service for `settings` (the environment's by default); migrates the store on creation unless
    GUANACO_MIGRATE_ON_START=false (a migration Job does it on Kubernetes)."""
    settings = settings or load_settings()
    app = FastAPI(
        title="Guanaco",
        version="0.1.0",
        description="Submit a fine-tuned LLM, get real user feedback within minutes. "
        "Routes and shapes follow Chai's public client (chaiverse).",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    store = Store(settings.resolved_database_url)
    app.state.store = store.migrate() if settings.migrate_on_start else store
    app.include_router(models.router)
    app.include_router(server_logs.router)
    app.include_router(feedback.router)
    app.include_router(leaderboard.router)
    app.include_router(developers.router)
    app.include_router(openai_proxy.router)
    app.include_router(beta.router)
    app.include_router(beta_page.router)
    app.include_router(battles.router)
    app.include_router(metrics.router)
    install_error_handlers(app)

    @app.get("/health", tags=["health"], summary="Liveness and database reachability")
    def health(session: SessionDep) -> dict[str, str]:
        session.execute(text("SELECT 1"))
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    # Outermost: refused bodies (413) get a request id and are counted too.
    if settings.log_format == "json":
        use_json_logs()
    app.add_middleware(RequestObserver, log_json=settings.log_format == "json")
    return app
