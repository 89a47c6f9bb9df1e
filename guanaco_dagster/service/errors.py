"""Domain errors → HTTP answers, so routes stay free of status-code plumbing."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from guanaco_dagster.beta.conversations import (
    ConversationError,
    ConversationInterrupted,
    ConversationNotFound,
)
from guanaco_dagster.beta.model_client import ModelUnavailable
from guanaco_dagster.beta.routing import NoModelAvailable
from guanaco_dagster.submissions.lifecycle import InvalidTransition
from guanaco_dagster.submissions.submissions import SubmissionNotFound

# Domain messages are written for developers, so they are shown as they are.
_MAPPING: list[tuple[type[Exception], int]] = [
    (SubmissionNotFound, 404),
    (ConversationNotFound, 404),
    (ConversationInterrupted, 503),  # the app should start a new conversation
    (ConversationError, 409),
    (InvalidTransition, 409),
    (NoModelAvailable, 503),
    (ModelUnavailable, 502),
]


def install_error_handlers(app: FastAPI) -> None:
    """Register one JSON handler per domain error, plus 503 for a database that went away."""
    for error_type, code in _MAPPING:
        app.add_exception_handler(error_type, _handler(code))

    async def database_unavailable(_request: Request, _error: Exception) -> JSONResponse:
        return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503)

    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(DBAPIError, database_unavailable)
    # Every pooled connection busy for the whole pool timeout: overloaded, not broken.
    app.add_exception_handler(PoolTimeout, database_unavailable)


def _handler(code: int):  # noqa: ANN202
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=code)

    return handle
