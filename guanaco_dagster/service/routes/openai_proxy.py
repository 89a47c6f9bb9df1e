"""An OpenAI-compatible API over your own deployed models: point the openai SDK (or any OpenAI client) at
`<service>/v1` with your developer key as the API key and a submission id as the model.

Requests are relayed to the model's vLLM server with the model name swapped for the one the server
answers to; answers come back as the server sent them (streams as server-sent events, byte for byte).
Only the caller's own models are visible: another developer's model is "not found", like every route here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import select
from starlette.background import BackgroundTask

from guanaco_dagster.service.dependencies import DeveloperDep, SessionDep
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Developer, Submission
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionNotFound, get_submission

router = APIRouter(prefix="/v1", tags=["openai"])


def model_server_client() -> httpx.AsyncClient:
    """The pool the service relays model requests through; generation can take minutes, connecting not."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(600.0, connect=5.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )


class Refusal(Exception):
    """A request the service answers itself, in OpenAI's error shape so OpenAI clients show the message."""

    def __init__(self, status_code: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status_code, self.message, self.kind = status_code, message, kind

    def response(self) -> JSONResponse:
        """`{"error": {...}}` for OpenAI clients, and `detail` as every other route of the service has it."""
        error = {"message": self.message, "type": self.kind, "code": self.status_code}
        return JSONResponse({"error": error, "detail": self.message}, status_code=self.status_code)


@dataclass(frozen=True)
class ModelServer:
    """Where one deployed submission is served, and the name its server answers to."""

    submission_id: str
    endpoint_url: str
    served_model_name: str


def deployed_model(store: Store, developer: Developer, model_id: str) -> ModelServer:
    """The caller's deployed model `model_id`: 404 when it is unknown or someone else's, 403 when not
    deployed."""
    with store.session() as session:
        try:
            submission = get_submission(session, model_id)
        except SubmissionNotFound:
            submission = None
        if submission is None or submission.developer_id != developer.id:
            raise Refusal(
                status.HTTP_404_NOT_FOUND,
                f"no model '{model_id}' among yours: `GET /v1/models` lists them",
                "model_not_found",
            )
        if submission.status != Status.DEPLOYED or not submission.endpoint_url:
            raise Refusal(
                status.HTTP_403_FORBIDDEN,
                f"model '{model_id}' is {submission.status}, not deployed: only deployed models answer",
                "model_not_deployed",
            )
        return ModelServer(
            submission.id, submission.endpoint_url.rstrip("/"), submission.served_model_name or submission.id
        )


@router.get("/models", summary="Your deployed models, as OpenAI's model list")
def list_models(session: SessionDep, developer: DeveloperDep) -> dict[str, Any]:
    """Each deployed submission of yours is a model whose id is the submission id."""
    deployed = session.scalars(
        select(Submission)
        .where(Submission.developer_id == developer.id, Submission.status == Status.DEPLOYED)
        .order_by(Submission.seq)
    )
    return {
        "object": "list",
        "data": [
            {
                "id": s.id,
                "object": "model",
                "created": int(s.created_at.timestamp()),
                "owned_by": developer.name,
            }
            for s in deployed
        ],
    }


async def _request_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as error:
        raise Refusal(
            status.HTTP_400_BAD_REQUEST, f"the body is not JSON: {error}", "invalid_request"
        ) from error
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise Refusal(
            status.HTTP_400_BAD_REQUEST,
            "the body must be a JSON object with `model`: a submission id",
            "invalid_request",
        )
    return body


async def _relay(request: Request, developer: Developer, path: str) -> Response:
    try:
        return await _forward(request, developer, path)
    except Refusal as refusal:
        return refusal.response()


async def _forward(request: Request, developer: Developer, path: str) -> Response:
    body = await _request_body(request)
    server = await run_in_threadpool(deployed_model, request.app.state.store, developer, body["model"])
    body["model"] = server.served_model_name
    http: httpx.AsyncClient = request.app.state.model_http
    try:
        upstream = await http.send(
            http.build_request("POST", f"{server.endpoint_url}/{path}", json=body), stream=True
        )
    except httpx.TransportError as error:
        raise Refusal(
            status.HTTP_502_BAD_GATEWAY,
            f"model '{server.submission_id}' did not answer ({type(error).__name__}); "
            "its server may be restarting: try again shortly",
            "model_unavailable",
        ) from error
    media_type = upstream.headers.get("content-type")
    if body.get("stream") and upstream.is_success:
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            media_type=media_type,
            background=BackgroundTask(upstream.aclose),
        )
    content = await upstream.aread()
    await upstream.aclose()
    if upstream.is_success:
        # Answer with the model id the caller used, not the server's internal name.
        answer = json.loads(content)
        answer["model"] = server.submission_id
        content = json.dumps(answer).encode()
    return Response(content, status_code=upstream.status_code, media_type=media_type)


@router.post("/chat/completions", summary="Chat completion from one of your deployed models")
async def chat_completions(request: Request, developer: DeveloperDep) -> Response:
    """OpenAI's chat completions, relayed to the model's server (`stream: true` streams)."""
    return await _relay(request, developer, "chat/completions")


@router.post("/completions", summary="Text completion from one of your deployed models")
async def completions(request: Request, developer: DeveloperDep) -> Response:
    """OpenAI's completions, relayed to the model's server (`stream: true` streams)."""
    return await _relay(request, developer, "completions")
