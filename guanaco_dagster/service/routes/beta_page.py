"""The beta web page (`/beta/app`): static HTML, CSS and JavaScript for testers holding an operator's
invite, plus the two routes the page needs besides the beta routes (who am I, I consent)."""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from string import Template
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from guanaco_dagster.beta.invites import (
    CONSENT_NOTICE,
    InviteRefused,
    invite_for_token,
    invite_user_id,
    record_consent,
)
from guanaco_dagster.service.dependencies import BETA_PAGE_OFF, PageInviteDep, SessionDep, get_settings
from guanaco_dagster.service.schemas import BetaPageSession
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.models import BetaInvite

router = APIRouter(prefix="/beta/app", tags=["beta page"])

_ASSET_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
# The page runs only its own script and talks only to this service; the invite token in its URL is never
# sent onwards as a referrer.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@cache
def _page_file(name: str) -> str:
    return (files("guanaco_dagster.service") / "beta_page" / name).read_text(encoding="utf-8")


def _error_page(status_code: int, title: str, detail: str) -> HTMLResponse:
    sentence = detail[:1].upper() + detail[1:]
    body = Template(_page_file("error.html")).substitute(title=escape(title), detail=escape(sentence))
    return HTMLResponse(body, status_code=status_code, headers=_PAGE_HEADERS)


@router.get("", include_in_schema=False)
def beta_page(
    settings: Annotated[Settings, Depends(get_settings)],
    session: SessionDep,
    invite: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The page itself, or an error page saying why this link does not open it."""
    if not settings.beta_page_enabled:
        return _error_page(404, "The beta page is off", BETA_PAGE_OFF)
    if not invite:
        return _error_page(401, "This page needs an invite", "open the invite link the operator gave you")
    try:
        invite_for_token(session, invite)
    except InviteRefused as refused:
        return _error_page(401, "This invite does not work", str(refused))
    return HTMLResponse(_page_file("index.html"), headers=_PAGE_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
def page_asset(name: str, settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    """The page's script and style sheet."""
    if not settings.beta_page_enabled or name not in _ASSET_TYPES:
        return Response(status_code=404)
    return Response(_page_file(name), media_type=_ASSET_TYPES[name], headers=_PAGE_HEADERS)


@router.get("/session", response_model=BetaPageSession, summary="The tester behind an invite")
def page_session(invite: PageInviteDep) -> BetaPageSession:
    """Who the invite lets in, until when, and whether they have consented."""
    return _session_of(invite)


@router.post("/consent", response_model=BetaPageSession, summary="Agree to share conversations")
def consent(invite: PageInviteDep) -> BetaPageSession:
    """Record that the tester agreed that their conversations are shared anonymised with model developers;
    the beta routes refuse their invite until then."""
    record_consent(invite)
    return _session_of(invite)


def _session_of(invite: BetaInvite) -> BetaPageSession:
    return BetaPageSession(
        user_id=invite_user_id(invite),
        name=invite.name,
        expires_at=invite.expires_at,
        consented=invite.consented_at is not None,
        consent_notice=CONSENT_NOTICE,
    )
