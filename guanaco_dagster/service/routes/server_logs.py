"""The end of a model server's log, for the model's owner (`guanaco logs ID --server`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse

from guanaco_dagster.deployment.kubernetes_manifests import resource_name
from guanaco_dagster.deployment.local_process import log_tail, server_log_path
from guanaco_dagster.deployment.server_log import strip_ansi
from guanaco_dagster.service.dependencies import DeveloperDep, SessionDep, get_settings
from guanaco_dagster.service.routes.models import owned_submission
from guanaco_dagster.settings import Settings

router = APIRouter(prefix="/models", tags=["models"])


@router.get(
    "/{submission_id}/server-log",
    response_class=PlainTextResponse,
    summary="The last lines of the model server's log (colour codes removed)",
)
def server_log(
    submission_id: str,
    session: SessionDep,
    developer: DeveloperDep,
    settings: Annotated[Settings, Depends(get_settings)],
    lines: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> str:
    owned_submission(session, developer, submission_id)
    if settings.deployer != "local":
        raise HTTPException(
            501,
            "server logs live in the cluster on Kubernetes: ask an operator for "
            f"`kubectl logs deployment/{resource_name(submission_id)}`",
        )
    text = log_tail(server_log_path(settings.servers_dir, submission_id), lines)
    if not text:
        raise HTTPException(404, f"no server log for {submission_id}: its server never started here")
    return strip_ansi(text) + "\n"
