"""A thin HTTP client for the Guanaco service's developer routes.

`GuanacoClient` speaks the same routes and shapes as Chai's public client (chaiverse) and returns the
service's own response models (`guanaco_dagster.service.schemas`, and `LeaderboardRow`), so the OpenAPI
schema stays the contract. Nothing here imports SQLAlchemy or the store; the saved credentials live in
`guanaco_dagster.cli.credentials`.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.service.schemas import (
    ChatRequest,
    ChatResponse,
    FeedbackResponse,
    LifecycleResponse,
    SubmissionInfo,
    SubmitRequest,
    SubmitResponse,
)

_LEADERBOARD = TypeAdapter(dict[str, LeaderboardRow])


class GuanacoError(Exception):
    """Anything that stops a request from getting an answer from the service."""


class ServiceUnreachable(GuanacoError):
    """No HTTP answer at all: nothing listens at the URL, or the connection broke."""

    def __init__(self, url: str, reason: str = "") -> None:
        super().__init__(url, reason)
        self.url, self.reason = url, reason

    def __str__(self) -> str:
        hint = "start it with `guanaco serve` or `guanaco up`"
        return f"cannot reach the Guanaco service at {self.url}: {hint}"


class GuanacoAPIError(GuanacoError):
    """The service answered with an error status; `detail` is its JSON `detail` (a list for 422)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, detail)
        self.status, self.detail = status, detail

    @property
    def field_errors(self) -> list[str]:
        """For a validation error (422): one "field.path: message" line per problem."""
        if not isinstance(self.detail, list):
            return []
        return [_field_error(item) for item in self.detail]

    @property
    def message(self) -> str:
        """The service's explanation, without the status code."""
        if self.field_errors:
            return "\n".join(self.field_errors)
        if isinstance(self.detail, str):
            return self.detail
        return json.dumps(self.detail)

    def __str__(self) -> str:
        if self.field_errors:
            return self.message
        return f"{self.message} (HTTP {self.status})"


def _field_error(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    # FastAPI prefixes where the value came from ("body", "query", ...): the user only knows the field.
    loc = [str(part) for part in item.get("loc", [])]
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{'.'.join(loc) or 'request'}: {message}"


class GuanacoClient:
    """The developer routes of one Guanaco service, authenticated with a developer key."""

    def __init__(self, base_url: str, key: str | None, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> GuanacoClient:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request and return its JSON; GuanacoAPIError for error statuses."""
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TransportError as error:
            raise ServiceUnreachable(self.base_url, str(error)) from error
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text.strip()[:500] or response.reason_phrase
        raise GuanacoAPIError(response.status_code, detail)

    def health(self) -> dict[str, str]:
        """`GET /health`: the service and its database answer."""
        return self._request("GET", "/health")

    def submit(self, request: SubmitRequest | dict[str, Any]) -> str:
        """`POST /models/submit`; returns the new submission's id."""
        body = request.model_dump(mode="json") if isinstance(request, SubmitRequest) else request
        return SubmitResponse.model_validate(self._request("POST", "/models/submit", body)).submission_id

    def list_submissions(self) -> dict[str, str]:
        """`GET /models/`: the caller's submission ids and their status, oldest first."""
        return self._request("GET", "/models/")

    def get_submission(self, submission_id: str) -> SubmissionInfo:
        """`GET /models/{id}`: status, stage timings, logs and failure reason."""
        return SubmissionInfo.model_validate(self._request("GET", f"/models/{_segment(submission_id)}"))

    def deactivate(self, submission_id: str) -> LifecycleResponse:
        """Ask for a deployed model to leave beta routing and stop serving."""
        return self._lifecycle(submission_id, "deactivate")

    def teardown(self, submission_id: str) -> LifecycleResponse:
        """Ask for a model's server to be stopped for good."""
        return self._lifecycle(submission_id, "teardown")

    def redeploy(self, submission_id: str) -> LifecycleResponse:
        """Ask for an inactive, torn-down or failed submission to go through the pipeline again."""
        return self._lifecycle(submission_id, "redeploy")

    def _lifecycle(self, submission_id: str, action: str) -> LifecycleResponse:
        data = self._request("POST", f"/models/{_segment(submission_id)}/{action}")
        return LifecycleResponse.model_validate(data)

    def chat(self, submission_id: str, request: ChatRequest | dict[str, Any]) -> ChatResponse:
        """`POST /models/{id}/chat`: the model's next reply to the history (newest message last)."""
        body = request.model_dump(mode="json") if isinstance(request, ChatRequest) else request
        return ChatResponse.model_validate(
            self._request("POST", f"/models/{_segment(submission_id)}/chat", body)
        )

    def feedback(self, submission_id: str) -> FeedbackResponse:
        """`GET /feedback/{id}`: every conversation with feedback (anonymised) and the latest summary."""
        return FeedbackResponse.model_validate(self._request("GET", f"/feedback/{_segment(submission_id)}"))

    def leaderboard(self) -> dict[str, LeaderboardRow]:
        """`GET /leaderboard`: every model that served users, keyed by submission id, best first."""
        return _LEADERBOARD.validate_python(self._request("GET", "/leaderboard"))


def _segment(value: str) -> str:
    """A submission id as one path segment: ids never contain '/', but a typo must not reach another route."""
    segment = quote(value, safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment
