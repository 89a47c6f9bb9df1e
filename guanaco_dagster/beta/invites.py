"""Invites to the beta web page: an operator hands a tester a link; its token lets that tester (and no one
else's conversations) use the beta routes until it expires or is revoked, once they have consented.

A token is a random 256-bit bearer secret stored only as its hash (like developer keys), so it can be
revoked and expired in the store; the tester acts as the pseudonymous user `web-<invite id>`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from guanaco_dagster.store.models import Battle, BetaInvite, Conversation, utcnow
from guanaco_dagster.submissions.developers import hash_key

INVITE_PREFIX = "gi-"
USER_ID_PREFIX = "web-"
DEFAULT_LIFETIME = timedelta(days=7)
CONSENT_NOTICE = (
    "Your conversations are shared anonymised with model developers: they read what you and the models "
    "wrote, with e-mail addresses, phone numbers and similar details masked, under a pseudonym."
)


class InviteRefused(PermissionError):
    """The token is no valid invite: unknown, revoked or expired (the message says which)."""


class ConsentRequired(PermissionError):
    """The tester has not agreed to share their conversations yet."""


class NotTheTestersOwn(PermissionError):
    """An invite tried to act as another user or on another user's conversation or battle."""


class InviteNotFound(LookupError):
    """No invite has this id."""


def looks_like_invite(token: str) -> bool:
    """Whether `token` has the invite form (other bearer tokens need no store look-up)."""
    return token.startswith(INVITE_PREFIX)


def invite_user_id(invite: BetaInvite) -> str:
    """The pseudonymous user id the tester chats and votes as."""
    return USER_ID_PREFIX + invite.id


def create_invite(session: Session, name: str, expires_at: datetime) -> tuple[BetaInvite, str]:
    """Store an invite for `name` and return it with its token; the token is shown once and never stored."""
    token = INVITE_PREFIX + secrets.token_urlsafe(32)
    invite = BetaInvite(id=secrets.token_hex(8), name=name, token_hash=hash_key(token), expires_at=expires_at)
    session.add(invite)
    session.flush()
    return invite, token


def invite_for_token(session: Session, token: str, now: datetime | None = None) -> BetaInvite:
    """The live invite behind `token`; InviteRefused, with the cause first, when there is none."""
    invite = session.scalar(select(BetaInvite).where(BetaInvite.token_hash == hash_key(token)))
    if invite is None:
        raise InviteRefused(
            "invite not recognised: the link is incomplete or was never issued; "
            "ask the operator for a new one"
        )
    if invite.revoked_at is not None:
        raise InviteRefused(f"invite revoked on {_shown(invite.revoked_at)}; ask the operator for a new one")
    if invite.expires_at <= (now or utcnow()):
        raise InviteRefused(f"invite expired on {_shown(invite.expires_at)}; ask the operator for a new one")
    return invite


def record_consent(invite: BetaInvite) -> None:
    """Remember that the tester agreed to the consent notice (the first time only)."""
    if invite.consented_at is None:
        invite.consented_at = utcnow()


def require_consent(invite: BetaInvite) -> None:
    """ConsentRequired unless the tester has agreed to the consent notice."""
    if invite.consented_at is None:
        raise ConsentRequired(
            "consent needed: agree that your conversations are shared anonymised with model developers first"
        )


def check_acts_as_itself(
    session: Session, invite: BetaInvite, body: Mapping[str, object] | None, path_params: Mapping[str, str]
) -> None:
    """NotTheTestersOwn when a request names another user, or another user's conversation or battle.

    Unknown ids pass: the route answers 404 for them as it does for everyone.
    """
    user_id = invite_user_id(invite)
    if body is not None and "user_id" in body and body["user_id"] != user_id:
        raise NotTheTestersOwn(f"an invite acts only as its own tester: send user_id '{user_id}'")
    owners = {"conversation_id": Conversation, "battle_id": Battle}
    for param, table in owners.items():
        if param in path_params:
            owner = session.scalar(select(table.user_id).where(table.id == path_params[param]))
            if owner is not None and owner != user_id:
                raise NotTheTestersOwn(f"this {param.removesuffix('_id')} belongs to another tester")


def revoke_invite(session: Session, invite_id: str) -> BetaInvite:
    """Stop the invite working at once (kept in the store; revoking twice keeps the first time)."""
    invite = session.get(BetaInvite, invite_id)
    if invite is None:
        raise InviteNotFound(f"no invite '{invite_id}': `guanaco admin invites` lists them")
    if invite.revoked_at is None:
        invite.revoked_at = utcnow()
    return invite


def list_invites(session: Session) -> list[BetaInvite]:
    """Every invite, newest first."""
    return list(session.scalars(select(BetaInvite).order_by(BetaInvite.created_at.desc())))


_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """When an invite given `--expires TEXT` ends: a duration (`90m`, `12h`, `7d`, `2w`) from now, or an
    ISO date or time (UTC unless it names its zone). ValueError, cause first, for anything else."""
    now = now or utcnow()
    duration = _DURATION.match(text)
    if duration:
        expires_at = now + timedelta(**{_UNITS[duration[2]]: int(duration[1])})
    else:
        try:
            expires_at = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(
                f"expiry '{text}' is neither a duration (90m, 12h, 7d, 2w) nor an ISO date (2026-12-31)"
            ) from None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= now:
        raise ValueError(f"expiry '{text}' is not in the future")
    return expires_at


def invite_url(base_url: str, token: str) -> str:
    """The link a tester opens: the beta page with the invite token."""
    return f"{base_url.rstrip('/')}/beta/app?{urlencode({'invite': token})}"


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
