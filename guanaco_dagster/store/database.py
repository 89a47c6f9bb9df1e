"""Engine, sessions and schema migrations of the Guanaco store (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Use psycopg2 for bare `postgresql://` URLs: that is the driver dagster-postgres brings."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


# The service runs its sync routes on anyio's worker threads (40, its default) and each may hold one
# connection; a smaller pool makes threads queue for connections and requests fail with "QueuePool limit".
SERVICE_WORKER_THREADS = int(os.environ.get("EXP_THREADS", "512"))
# SQLite has one writer at a time: a writer that finds the store locked waits this long for its turn
# (other writers' transactions take milliseconds) before the request fails with 503, never a 500.
SQLITE_BUSY_TIMEOUT_S = 30.0


@cache
def engine_for(url: str) -> Engine:
    """One engine per URL per process, its pool sized to the service's worker threads."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # A pool smaller than the threads deadlocks under load (every thread waiting for a connection that
    # only a thread can give back): 10 + 40 overflow.
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=40, pool_timeout=30
    )


def _sqlite_engine(url: str) -> Engine:
    """SQLite with write-ahead logging: readers never wait for the writer, and commits skip the fsync."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return create_engine(url)  # in memory: SQLAlchemy's one-connection-per-thread pool is required
    create_private_file(Path(database))
    experiment = os.environ.get("GUANACO_EXPERIMENT_SQLITE_POOL", "q10")
    if experiment == "null":
        pool = {"poolclass": NullPool}
    elif experiment == "queue15":
        pool = {"pool_size": 5, "max_overflow": 10, "pool_timeout": 30}
    elif experiment == "q40":
        pool = {"pool_size": 40, "max_overflow": SERVICE_WORKER_THREADS, "pool_timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        pool = {"pool_size": 10, "max_overflow": SERVICE_WORKER_THREADS, "pool_timeout": SQLITE_BUSY_TIMEOUT_S}
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **pool)
    if os.environ.get("GUANACO_EXPERIMENT_WRITE_LOCK"):
        _serialise_writers(engine)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a crash of the service with WAL; only power loss can drop the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


import re
import threading
_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


def _serialise_writers(engine: Engine) -> None:
    write_lock = threading.Lock()

    @event.listens_for(engine, "before_cursor_execute")
    def _take(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if not conn.info.get("writer") and _WRITE.match(statement):
            if not write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
                raise TimeoutError("database is locked")
            conn.info["writer"] = True

    def _give_back(dbapi_connection, record, *_):  # noqa: ANN001
        if record is not None and record.info.pop("writer", False):
            write_lock.release()

    for name in ("checkin", "invalidate", "soft_invalidate", "close"):
        event.listen(engine.pool, name, _give_back)


def create_private_file(path: Path) -> None:
    """Create `path` readable and writable by its owner only (0600), or make an existing one so.

    SQLite gives its -wal and -shm files the database file's mode, so they are private too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)


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
