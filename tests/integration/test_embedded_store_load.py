"""The embedded default store (SQLite in the platform's home) under real load: 200 beta conversations at once
through the real service, answered without a 5xx and without losing feedback; a store another process
holds locked makes a request wait, not fail; the store file is its owner's alone."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from guanaco_dagster.beta.conversations import start_conversation
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.database import Store, engine_for
from guanaco_dagster.store.models import Feedback
from guanaco_dagster.submissions.formatter import GenerationParams
from guanaco_dagster.submissions.submissions import get_submission
from guanaco_dagster.testing.conversation_load import ConversationLoadConfig, run_conversation_load
from tests.fixtures.service import ServiceFixture, running_service
from tests.fixtures.vllm import ServedModel

CONVERSATIONS = 200
# Replies are capped short: the message route waits for the model, and this test is about the store.
REPLY_TOKENS = 8


@pytest.fixture
def embedded_service(tmp_path: Path) -> Iterator[ServiceFixture]:
    """The service with the platform's default settings: its store is the SQLite file in a fresh home."""
    home = tmp_path / "home"
    home.mkdir()
    with running_service(home, Settings(home=home, database_url=None).resolved_database_url) as service:
        yield service


def _deploy(service: ServiceFixture, model: ServedModel) -> str:
    """A deployed submission served by the session's vLLM server, with short replies."""
    submission_id = service.deployed_submission(
        service.alice_key, model.endpoint_url, model.served_model_name, "alice/embedded-load"
    )
    with service.store.session() as session:
        submission = get_submission(session, submission_id)
        submission.generation_params = GenerationParams(max_output_tokens=REPLY_TOKENS).model_dump()
    return submission_id


@pytest.mark.vllm
def test_200_concurrent_beta_conversations_on_the_embedded_store_get_no_5xx_and_lose_no_feedback(
    embedded_service, served_tiny_model, capsys
):
    _deploy(embedded_service, served_tiny_model)
    config = ConversationLoadConfig(
        base_url=embedded_service.url,
        beta_token=embedded_service.beta_token,
        conversations=CONVERSATIONS,
        concurrency=CONVERSATIONS,
        messages=2,
    )

    report = run_conversation_load(config, embedded_service.store)

    with capsys.disabled():
        print(
            f"\nembedded store: {report.completed}/{CONVERSATIONS} conversations in {report.wall_s:.1f} s, "
            f"statuses {dict(report.statuses)}, non-model routes "
            f"p50 {report.non_model_percentile_s(50) * 1000:.0f} ms "
            f"p99 {report.non_model_percentile_s(99) * 1000:.0f} ms"
        )
    assert report.server_errors == 0, report.error_samples
    assert report.transport_errors == 0, report.error_samples
    assert report.completed == CONVERSATIONS, report.error_samples
    assert report.accepted_feedback == report.stored_feedback == CONVERSATIONS


def _hold_write_lock(database: Path, seconds: float, locked: threading.Event) -> None:
    """Another process's writer: hold SQLite's write lock on `database` for `seconds`."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
    finally:
        connection.close()


def test_a_feedback_post_that_meets_a_locked_store_waits_for_it_and_is_stored(embedded_service):
    service = embedded_service
    # Opened in the store, not routed: no message is sent, so no model server is needed.
    submission_id = service.deployed_submission(
        service.alice_key, "http://127.0.0.1:9/v1", "unused", "alice/locked"
    )
    with service.store.session() as session:
        conversation = start_conversation(session, user_id="u", submission_id=submission_id).id
    with service.beta_client() as client:
        locked = threading.Event()
        holder = threading.Thread(
            target=_hold_write_lock, args=(Path(service.store.url.split("///", 1)[1]), 2.0, locked)
        )
        holder.start()
        locked.wait(5)
        started = time.monotonic()
        response = client.post(
            f"/beta/conversations/{conversation}/feedback", json={"thumbs_up": True, "idempotency_key": "k"}
        )
        waited_s = time.monotonic() - started
        holder.join()

    assert response.status_code == 200, response.text
    assert waited_s > 1.0  # it waited for the other writer rather than failing at once
    with service.store.session() as session:
        stored = session.scalars(select(Feedback).where(Feedback.submission_id == submission_id)).all()
    assert [feedback.idempotency_key for feedback in stored] == ["k"]


def test_the_embedded_store_file_is_readable_and_writable_by_its_owner_only(tmp_path):
    database = tmp_path / "home" / "guanaco.db"
    store = Store(f"sqlite:///{database}").migrate()
    with store.session() as session:
        session.execute(text("SELECT 1"))

    for path in (database, database.with_name("guanaco.db-wal"), database.with_name("guanaco.db-shm")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_an_existing_store_file_open_to_others_is_made_private(tmp_path):
    database = tmp_path / "guanaco.db"
    sqlite3.connect(database).close()
    database.chmod(0o644)

    Store(f"sqlite:///{database}").migrate()

    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_the_embedded_store_writes_ahead_and_waits_for_locks(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'guanaco.db'}").migrate()
    with engine_for(store.url).connect() as connection:
        journal_mode = connection.execute(text("PRAGMA journal_mode")).scalar()
        synchronous = connection.execute(text("PRAGMA synchronous")).scalar()
        busy_timeout_ms = connection.execute(text("PRAGMA busy_timeout")).scalar()
    assert (journal_mode, synchronous) == ("wal", 1)  # 1 = NORMAL: no fsync per commit, safe with WAL
    assert busy_timeout_ms >= 10_000
