"""The Python SDK of a Guanaco service: `GuanacoClient`, a thin HTTP client for the developer routes.

    from guanaco_dagster.cli.client import GuanacoClient

    with GuanacoClient.from_login() as guanaco:          # the URL and key `guanaco login` saved
        submission_id = guanaco.submit({"model_repo": "org/model"})
        guanaco.get_submission(submission_id).status      # "pending" ... "deployed"
        guanaco.feedback_frame(submission_id)             # pandas: one row per conversation
        guanaco.leaderboard_frame()                       # pandas: every model, rated ones first

It speaks the same routes and shapes as Chai's public client (chaiverse) and returns the service's own
response models (`guanaco_dagster.service.schemas`, and `LeaderboardRow`), so the OpenAPI schema stays the
contract; the `*_frame` methods return pandas DataFrames (pandas is imported only when they are called).
A deployed model also answers OpenAI's API: `openai.OpenAI(base_url=client.openai_base_url,
api_key=<your key>)` with the submission id as the model. Nothing here imports SQLAlchemy or the store.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.service.schemas import (
    ChatRequest,
    ChatResponse,
    Competition,
    DeveloperInfo,
    Evaluation,
    FeedbackResponse,
    LifecycleResponse,
    SubmissionInfo,
    SubmitRequest,
    SubmitResponse,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GuanacoAPIError", "GuanacoClient", "GuanacoError", "ServiceUnreachable"]

_LEADERBOARD = TypeAdapter(dict[str, LeaderboardRow])
_COMPETITIONS = TypeAdapter(list[Competition])


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
    """The developer routes of one Guanaco service, authenticated with a developer key.

    `base_url` is the service (e.g. "http://127.0.0.1:8080"); `key` a developer key (`guanaco admin
    create-key`), needed by every route but the public leaderboard and competitions. Errors raise
    `ServiceUnreachable` (no answer) or `GuanacoAPIError` (an error status, with the service's `detail`).
    Use it as a context manager, or call `close()`.
    """

    def __init__(self, base_url: str, key: str | None = None, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.has_key = bool(key)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    @classmethod
    def from_login(cls, timeout: float = 60) -> GuanacoClient:
        """A client for the service and key `guanaco login` saved (or `GUANACO_SERVICE_URL`/`GUANACO_KEY`)."""
        from guanaco_dagster.cli.credentials import resolve_credentials

        credentials = resolve_credentials()
        return cls(credentials.url, credentials.key, timeout=timeout)

    @property
    def openai_base_url(self) -> str:
        """The service's OpenAI-compatible base URL: give it to any OpenAI client with your key as the API
        key and a deployed submission id as the model."""
        return f"{self.base_url}/v1"

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
        return self._send(method, path, json=body).json()

    def _request_text(self, method: str, path: str, params: dict[str, Any] | None = None) -> str:
        """Send one request and return its body as text; GuanacoAPIError for error statuses."""
        return self._send(method, path, params=params).text

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **options)
        except httpx.TransportError as error:
            raise ServiceUnreachable(self.base_url, str(error)) from error
        if response.is_success:
            return response
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text.strip()[:500] or response.reason_phrase
        raise GuanacoAPIError(response.status_code, detail)

    def health(self) -> dict[str, str]:
        """`GET /health`: the service and its database answer."""
        return self._request("GET", "/health")

    def whoami(self) -> DeveloperInfo:
        """`GET /developers/me`: the developer the key belongs to and how many submissions they made."""
        return DeveloperInfo.model_validate(self._request("GET", "/developers/me"))

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

    def server_log(self, submission_id: str, lines: int = 200) -> str:
        """`GET /models/{id}/server-log`: the end of your model server's log, colour codes removed."""
        path = f"/models/{_segment(submission_id)}/server-log"
        return self._request_text("GET", path, params={"lines": lines})

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

    def feedback_frame(self, submission_id: str) -> pd.DataFrame:
        """The submission's feedback as a DataFrame, one row per conversation (chaiverse's `Feedback.df`
        columns, plus `message_count` and `feedback_at`)."""
        from guanaco_dagster.cli.frames import feedback_frame

        return feedback_frame(self.feedback(submission_id))

    def conversations_frame(self, submission_id: str) -> pd.DataFrame:
        """Every message of the submission's conversations with feedback, one row per message."""
        from guanaco_dagster.cli.frames import conversations_frame

        return conversations_frame(self.feedback(submission_id))

    def leaderboard(self) -> dict[str, LeaderboardRow]:
        """`GET /leaderboard` (public): every model that reached users, keyed by submission id, in rank
        order; models with too little feedback are `provisional` and come after every rated one."""
        return _LEADERBOARD.validate_python(self._request("GET", "/leaderboard"))

    def leaderboard_frame(self) -> pd.DataFrame:
        """The leaderboard as a DataFrame indexed by rank (rated models first)."""
        from guanaco_dagster.cli.frames import leaderboard_frame

        return leaderboard_frame(self.leaderboard())

    def competitions(self) -> list[Competition]:
        """`GET /competitions` (public): monthly windows over the leaderboard, the current month last."""
        return _COMPETITIONS.validate_python(self._request("GET", "/competitions"))

    def evaluate(self, submission_id: str) -> Evaluation:
        """`GET /models/{id}/evaluate`: the model's leaderboard row, latency test and feedback summary."""
        return Evaluation.model_validate(self._request("GET", f"/models/{_segment(submission_id)}/evaluate"))


def _segment(value: str) -> str:
    """A submission id as one path segment: ids never contain '/', but a typo must not reach another route."""
    segment = quote(value, safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment
