"""FastAPI dependencies: settings, database sessions, developer, beta-service and invite authentication."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from guanaco_dagster.beta.invites import (
    InviteRefused,
    check_acts_as_itself,
    invite_for_token,
    looks_like_invite,
    require_consent,
)
from guanaco_dagster.feedback.pseudonym_key import pseudonym_key
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import BetaInvite, Developer
from guanaco_dagster.submissions.developers import developer_for_key

BETA_PAGE_OFF = "the beta page is off: the operator turns it on with GUANACO_BETA_PAGE_ENABLED=true"

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


async def _json_object(request: Request) -> dict | None:
    """The request's JSON body when it is an object (what an invite's checks read), else None."""
    if request.method not in {"POST", "PUT", "PATCH"} or not await request.body():
        return None
    try:
        body = await request.json()
    except ValueError:
        return None  # the route answers 422 for it
    return body if isinstance(body, dict) else None


def beta_service(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    store: Annotated[Store, Depends(get_store)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    body: Annotated[dict | None, Depends(_json_object)],
) -> None:
    """Beta routes take the app's bot-response service (GUANACO_BETA_SERVICE_TOKEN), or, when the beta web
    page is on, a tester's invite: a live, consented invite acting only as its own tester."""
    expected = settings.beta_service_token
    if expected is None and not settings.beta_page_enabled:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "beta routing is off: no service token set")
    token = credentials.credentials if credentials else ""
    if expected is not None and hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        return
    if settings.beta_page_enabled and looks_like_invite(token):
        # A session of its own, closed before the route runs: a message route holds no connection while
        # the model answers.
        with store.session() as session:
            invite = _live_invite(session, token)
            try:
                require_consent(invite)
                check_acts_as_itself(session, invite, body, request.path_params)
            except PermissionError as refused:
                raise HTTPException(status.HTTP_403_FORBIDDEN, str(refused)) from None
        return
    raise _unauthorized("a valid beta service token or beta page invite is required")


def _live_invite(session: Session, token: str) -> BetaInvite:
    try:
        return invite_for_token(session, token)
    except InviteRefused as refused:
        raise _unauthorized(str(refused)) from None


def page_invite(
    settings: Annotated[Settings, Depends(get_settings)],
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> BetaInvite:
    """The invite of the tester using the beta web page (404 while the page is off)."""
    if not settings.beta_page_enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, BETA_PAGE_OFF)
    if credentials is None:
        raise _unauthorized("an invite is required: open the link the operator gave you")
    return _live_invite(session, credentials.credentials)


PageInviteDep = Annotated[BetaInvite, Depends(page_invite)]
