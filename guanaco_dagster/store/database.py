"""Engine, sessions and schema migrations of the Guanaco store (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Use psycopg2 for bare `postgresql://` URLs: that is the driver dagster-postgres brings."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


@cache
def engine_for(url: str) -> Engine:
    """One engine per URL per process; SQLite gets WAL and a busy timeout so processes can share it."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # The service runs sync routes on up to 40 threads; a pool smaller than that deadlocks under load
    # (every thread waiting for a connection that only a thread can give back): 10 + 40 overflow.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40, pool_timeout=30)


def migrate(url: str) -> None:
    """Bring the store's schema to the newest Alembic revision (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    with engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = sessionmaker(engine_for(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class Store:
    """The Guanaco store at one URL: migrations and sessions."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)

    def migrate(self) -> Store:
        """Create or upgrade the schema; returns self so `Store(url).migrate()` reads well."""
        migrate(self.url)
        return self

    def session(self) -> AbstractContextManager[Session]:
        """A transactional session scope (commit on success, rollback on error)."""
        return session_scope(self.url)
