"""Developer accounts and their API keys (stored only as hashes)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from guanaco_dagster.store.models import Developer

KEY_PREFIX = "gk-"


def hash_key(key: str) -> str:
    """The stored form of a key: sha256 is enough for random 256-bit tokens and keeps lookups O(1)."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_developer(session: Session, name: str) -> tuple[Developer, str]:
    """Create a developer and return it with its key; the key is shown once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    developer = Developer(name=name, key_hash=hash_key(key))
    session.add(developer)
    session.flush()
    return developer, key


def developer_for_key(session: Session, key: str) -> Developer | None:
    """The developer owning `key`, or None."""
    return session.scalar(select(Developer).where(Developer.key_hash == hash_key(key)))


def get_or_create_developer(session: Session, name: str) -> Developer:
    """The named developer, created (with a key nobody knows) if missing; for the demo and tests."""
    developer = session.scalar(select(Developer).where(Developer.name == name))
    if developer is None:
        developer, _ = create_developer(session, name)
    return developer


def issue_key(session: Session, name: str) -> tuple[Developer, str]:
    """A fresh key for the named developer (created if missing); any previous key stops working."""
    developer = session.scalar(select(Developer).where(Developer.name == name))
    if developer is None:
        return create_developer(session, name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    developer.key_hash = hash_key(key)
    return developer, key
