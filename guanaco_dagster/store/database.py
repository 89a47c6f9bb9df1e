"""Engine, sessions and schema migrations of the Guanaco store (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Use psycopg2 for bare `postgresql://` URLs: that is the driver dagster-postgres brings."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


# The service's worker threads (anyio's thread pool; set in service/app.py). More threads than concurrent
# requests, because FastAPI validates a sync route's response on a second thread while the request still
# holds its connection (and, on SQLite, the write lock): with 40 threads (anyio's default) 200 concurrent
# conversations deadlocked until timeouts, on SQLite ("database is locked") and on PostgreSQL ("QueuePool
# limit") alike. Idle threads exit after 10 s, so the headroom costs nothing at rest.
SERVICE_WORKER_THREADS = 512
# SQLite has one writer at a time: a writer that finds the store locked waits this long for its turn
# (a transaction takes milliseconds) before the request fails with 503 (never a 500).
SQLITE_BUSY_TIMEOUT_S = 30.0


@cache
def engine_for(url: str) -> Engine:
    """One engine per URL per process; SQLite gets write-ahead logging, a private file and a wide pool."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # 10 connections kept, 40 more at peak: PostgreSQL's own connection limit (100 by default) is shared
    # with Dagster. Threads beyond that wait for a connection, never for each other.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40, pool_timeout=30)


def _sqlite_engine(url: str) -> Engine:
    """SQLite in write-ahead-log mode: readers never wait for the writer, and commits skip the fsync."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return create_engine(url)  # in memory: SQLAlchemy's one-connection-per-thread pool is required
    create_private_file(Path(database))
    # A connection per worker thread at peak, 10 kept open (each holds 3 file descriptors). Measured at 200
    # concurrent conversations, pools of 10 or 40 kept and a pool of none (NullPool) were equally fast.
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
        pool_size=10,
        max_overflow=SERVICE_WORKER_THREADS,
        pool_timeout=SQLITE_BUSY_TIMEOUT_S,
    )
    _queue_writers(engine)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL survives a crash of any process; only a power cut can lose the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "savepoint")
    def _begin_before_savepoint(connection, _name):  # noqa: ANN001
        # pysqlite opens its transaction only before the first INSERT/UPDATE/DELETE. A SAVEPOINT sent first
        # opens one of SQLite's own, and releasing it commits everything so far: a submission row was seen
        # by the submission sensor before its run was launched, and ran twice. Open the transaction first.
        if not connection.connection.dbapi_connection.in_transaction:
            connection.exec_driver_sql("BEGIN")

    return engine


# What makes SQLite take its write lock (pysqlite opens a transaction before the DML ones).
_WRITE_STATEMENT = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|ALTER|DROP)\b", re.IGNORECASE)
# Set in a pooled connection's info while it holds this process's write turn.
_HOLDS_WRITE_TURN = "guanaco_holds_write_turn"


def _queue_writers(engine: Engine) -> None:
    """Let one connection of this process write at a time; the others queue on a lock until it checks in.

    SQLite's own wait for its write lock polls, sleeping up to 100 ms between tries, so under load an
    unlucky writer kept losing: at 200 concurrent conversations 1 % of requests waited 20-28 s, close to
    the busy timeout (503). Queued here, the slowest waited 5-6 s. Other processes still meet SQLite's wait.
    """
    writer = threading.Lock()

    @event.listens_for(engine, "before_cursor_execute")
    def _wait_for_turn(connection, _cursor, statement, _parameters, _context, _executemany):  # noqa: ANN001
        if connection.info.get(_HOLDS_WRITE_TURN) or not _WRITE_STATEMENT.match(statement):
            return
        if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise sqlite3.OperationalError("database is locked")  # the service answers 503, as SQLite's own
        connection.info[_HOLDS_WRITE_TURN] = True

    def _end_turn(_dbapi_connection, record, *_args) -> None:  # noqa: ANN001
        # After commit or rollback the connection goes back to the pool (or is dropped): the turn ends.
        if record is not None and record.info.pop(_HOLDS_WRITE_TURN, False):
            writer.release()

    for pool_event in ("checkin", "detach", "invalidate", "soft_invalidate", "close"):
        event.listen(engine.pool, pool_event, _end_turn)


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
    # Imported here: Alembic costs every Dagster run worker, which never migrates, a noticeable start-up.
    from alembic import command
    from alembic.config import Config

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
