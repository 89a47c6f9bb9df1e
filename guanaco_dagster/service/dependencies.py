"""FastAPI dependencies: settings, database sessions, developer and beta-service authentication."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from guanaco_dagster.feedback.pseudonym_key import pseudonym_key
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Developer
from guanaco_dagster.submissions.developers import developer_for_key

bearer = HTTPBearer(auto_error=False, description="A developer key (`guanaco admin create-key`).")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_pseudonym_key(settings: Annotated[Settings, Depends(get_settings)]) -> bytes:
    """The secret user pseudonyms are made with (GUANACO_PSEUDONYM_KEY, or the key under the home)."""
    return pseudonym_key(settings.home, settings.pseudonym_key)


PseudonymKeyDep = Annotated[bytes, Depends(get_pseudonym_key)]


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_session(store: Annotated[Store, Depends(get_store)]) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back if it raises."""
    with store.session() as session:
        yield session


# scope="function": commit before the response is sent, so a 200 means the write is durable.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def current_developer(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    # chaiverse sends this header with an underscore, exactly as named here.
    developer_key: Annotated[
        str | None,
        Header(convert_underscores=False, description="Developer key (chaiverse's feedback client)."),
    ] = None,
) -> Developer:
    """The developer whose key came as `Authorization: Bearer …` or a `developer_key` header."""
    key = credentials.credentials if credentials else developer_key
    if not key:
        raise _unauthorized("a developer key is required: `Authorization: Bearer <key>`")
    developer = developer_for_key(session, key)
    if developer is None:
        raise _unauthorized("unknown developer key")
    return developer


DeveloperDep = Annotated[Developer, Depends(current_developer)]


def beta_service(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Only the app's bot-response service (holding GUANACO_BETA_SERVICE_TOKEN) may use beta routes."""
    if settings.beta_service_token is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "beta routing is off: no service token set")
    expected = settings.beta_service_token.get_secret_value()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise _unauthorized("a valid beta service token is required")
