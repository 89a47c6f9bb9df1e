"""Throwaway databases on a local PostgreSQL server, for tests and benchmarks (trust auth, user postgres)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from guanaco_dagster.store.database import engine_for

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


class PostgresUnavailable(RuntimeError):
    """The local PostgreSQL server cannot be reached."""


@contextmanager
def temporary_postgres_database(prefix: str = "guanaco_scratch", admin_dsn: str = ADMIN_DSN) -> Iterator[str]:
    """A fresh database (SQLAlchemy URL), dropped with its connections afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(admin_dsn)
    except psycopg2.OperationalError as error:
        raise PostgresUnavailable(
            f"PostgreSQL at 127.0.0.1:5432 (user postgres) is needed: {error}"
        ) from error
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
