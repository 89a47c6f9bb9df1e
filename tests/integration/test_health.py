"""Health-aware routing, failover and self-healing against real processes standing in for model servers.

A "server" here is `python -m http.server` answering `GET /health` (a file named `health`): a real process
on a real port, killed with SIGKILL like a crashed vLLM. Tests that need a model to answer use the session's
vLLM server; tests/integration/test_self_heal.py kills real vLLM servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dagster import AssetKey, DagsterInstance, SkipReason, build_sensor_context
from sqlalchemy import select

from guanaco_dagster.beta.conversations import start_conversation
from guanaco_dagster.beta.health import HealthSettings, ProbeResult, record_probe
from guanaco_dagster.beta.health_watcher import HealthWatcher
from guanaco_dagster.beta.routing import deployed_candidates
from guanaco_dagster.beta.self_heal import HEAL_MESSAGE
from guanaco_dagster.ports import free_port, wait_until
from guanaco_dagster.store.models import Message
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import (
    SubmissionRequest,
    create_submission,
    get_submission,
    start_stage,
    transition,
)
from resources import DeployerResource, StoreResource
from resources.health import HealthResource
from resources.s3_cache import S3CacheResource, S3ClientResource
from sensors.self_heal_sensor import self_heal_sensor
from tests.fixtures.store import walk_to


@dataclass
class HealthServer:
    """A real process answering `GET /health` with 200 until it is killed."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        """SIGKILL its process group, as the kernel's OOM killer would, and reap it."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_health_server(folder: Path, log_path: Path | None = None) -> HealthServer:
    """Start `python -m http.server` serving a `health` file from `folder`; wait until it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "health").write_text("ok")
    port = free_port()
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - the child keeps the descriptor
    with log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                str(port),
                "--bind",
                "127.0.0.1",
                "--directory",
                str(folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = HealthServer(process, port)

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout_s=20, what="health server")
    return server


@pytest.fixture
def health_server(tmp_path: Path) -> Iterator[HealthServer]:
    server = start_health_server(tmp_path / "www")
    yield server
    if server.process.poll() is None:
        server.kill()


def deploy_on(store, endpoint_url: str, repo: str, served_model_name: str = "m") -> str:  # noqa: ANN001
    """A submission taken through the lifecycle to `deployed` on an already running server."""
    with store.session() as session:
        developer = get_or_create_developer(session, "ada")
        submission = create_submission(session, developer, SubmissionRequest(model_repo=repo))
        walk_to(session, submission.id, Status.DEPLOYED)
        deployed = get_submission(session, submission.id)
        deployed.endpoint_url, deployed.served_model_name = endpoint_url, served_model_name
        return submission.id


def routable(store) -> set[str]:  # noqa: ANN001
    with store.session() as session:
        return {candidate.submission_id for candidate in deployed_candidates(session)}


def health_of(store, submission_id: str) -> tuple[bool | None, str | None]:  # noqa: ANN001
    with store.session() as session:
        submission = get_submission(session, submission_id)
        return submission.health_ok, submission.health_detail


# ---------------------------------------------------------------------------------------------------------
# Health state and routing
# ---------------------------------------------------------------------------------------------------------


def test_a_just_deployed_model_that_was_never_checked_is_routed(store, health_server):
    submission_id = deploy_on(store, health_server.endpoint_url, "org/fresh")
    assert health_of(store, submission_id) == (None, None)
    assert submission_id in routable(store)


def test_a_killed_server_fails_its_next_check_and_leaves_routing(store, health_server):
    submission_id = deploy_on(store, health_server.endpoint_url, "org/doomed")
    watcher = HealthWatcher(store, HealthSettings(check_timeout_s=1.0))
    try:
        assert watcher.check_once()[submission_id].ok
        assert submission_id in routable(store)
        health_server.kill()
        result = watcher.check_once()[submission_id]
    finally:
        watcher.stop()
    assert not result.ok and result.detail.startswith("unreachable:")
    assert health_of(store, submission_id) == (False, result.detail)
    assert submission_id not in routable(store)


def test_a_server_that_passes_again_returns_to_routing(sqlite_store, health_server):
    submission_id = deploy_on(sqlite_store, health_server.endpoint_url, "org/flaky")
    with sqlite_store.session() as session:
        record_probe(session, submission_id, health_server.endpoint_url, ProbeResult(False, "blip"))
    assert submission_id not in routable(sqlite_store)
    watcher = HealthWatcher(sqlite_store)
    try:
        watcher.check_once()
    finally:
        watcher.stop()
    assert health_of(sqlite_store, submission_id) == (True, None)
    assert submission_id in routable(sqlite_store)


def test_a_check_of_a_replaced_server_does_not_label_its_successor(sqlite_store, health_server):
    submission_id = deploy_on(sqlite_store, health_server.endpoint_url, "org/moved")
    with sqlite_store.session() as session:
        get_submission(session, submission_id).endpoint_url = "http://127.0.0.1:1/v1"  # redeployed elsewhere
    with sqlite_store.session() as session:
        stored = record_probe(session, submission_id, health_server.endpoint_url, ProbeResult(False, "old"))
    assert not stored
    assert health_of(sqlite_store, submission_id) == (None, None)


def test_the_services_watcher_takes_a_killed_server_out_of_routing_within_5_s(service, tmp_path):
    server = start_health_server(tmp_path / "www")
    submission_id = service.deployed_submission(service.bob_key, server.endpoint_url, "m", "bob/watched")
    wait_until(lambda: health_of(service.store, submission_id)[0] is True, timeout_s=10, what="first check")
    server.kill()
    killed = time.monotonic()
    wait_until(lambda: health_of(service.store, submission_id)[0] is False, timeout_s=10, what="failed check")
    assert time.monotonic() - killed < 5.0
    beta = service.beta_client()
    routed = [beta.post("/beta/conversations", json={"user_id": "u"}) for _ in range(10)]
    assert all(r.status_code == 503 or r.json()["submission_id"] != submission_id for r in routed)


# ---------------------------------------------------------------------------------------------------------
# Failover
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def steady_model(service, served_tiny_model) -> str:
    """A deployed model on the session's vLLM server, for conversations to fail over to."""
    return service.deployed_submission(
        service.alice_key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, "alice/steady"
    )


def test_the_first_message_to_a_dead_model_is_answered_by_another_model(service, steady_model, tmp_path):
    server = start_health_server(tmp_path / "www")
    dead = service.deployed_submission(service.bob_key, server.endpoint_url, "m", "bob/dead-on-arrival")
    with service.store.session() as session:  # routed to it an instant before its server died
        conversation_id = start_conversation(session, user_id="u", submission_id=dead).id
    server.kill()
    reply = service.beta_client().post(
        f"/beta/conversations/{conversation_id}/messages", json={"message": "Hello there!"}
    )
    assert reply.status_code == 200, reply.text
    assert isinstance(reply.json()["reply"], str)
    with service.store.session() as session:
        from guanaco_dagster.store.models import Conversation

        assert session.get(Conversation, conversation_id).submission_id != dead
    assert health_of(service.store, dead)[0] is False  # out of routing at once, not at the next check


# ---------------------------------------------------------------------------------------------------------
# Self-healing
# ---------------------------------------------------------------------------------------------------------


def _heal_tick(store, state_dir: Path, instance: DagsterInstance):  # noqa: ANN001, ANN202
    resources = {
        "store": StoreResource(database_url=store.url),
        "deployer": DeployerResource(
            state_dir=str(state_dir), s3_access_key_id="unused", s3_secret_access_key="unused"
        ),
        # No artifact is cached for these models, so the cache is never reached.
        "s3_cache": S3CacheResource(s3=S3ClientResource(endpoint_url="http://127.0.0.1:1"), bucket="unused"),
        "health": HealthResource(**HealthSettings().model_dump()),
    }
    with build_sensor_context(instance=instance, resources=resources) as context:
        return self_heal_sensor(context)


def _dies(store, submission_id: str, endpoint_url: str) -> None:  # noqa: ANN001
    watcher = HealthWatcher(store)
    try:
        assert not watcher.check_once()[submission_id].ok
    finally:
        watcher.stop()


def test_the_self_heal_sensor_requests_one_heal_run_for_a_dead_server(
    store, health_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("GUANACO_HEALTH_HEAL_AFTER_S", "0")
    submission_id = deploy_on(store, health_server.endpoint_url, "org/healme")
    health_server.kill()
    _dies(store, submission_id, health_server.endpoint_url)
    with DagsterInstance.ephemeral() as instance:
        result = _heal_tick(store, tmp_path / "servers", instance)
        again = _heal_tick(store, tmp_path / "servers", instance)
    (request,) = result.run_requests
    assert request.run_key == f"{submission_id}#heal-1"
    assert request.partition_key == submission_id
    assert set(request.asset_selection) == {AssetKey("live_deployment"), AssetKey("latency_report")}
    assert isinstance(again, SkipReason)  # the heal is under way: no second run
    with store.session() as session:
        submission = get_submission(session, submission_id)
        assert submission.status == Status.DEPLOYING
        assert submission.events[-1].message.startswith(HEAL_MESSAGE)
        assert "stopped answering its health check (unreachable:" in submission.events[-1].message
        assert submission.health_ok is None  # its successor starts unchecked


def test_a_server_that_keeps_dying_is_failed_with_the_cause_once_the_budget_is_spent(
    store, health_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("GUANACO_HEALTH_HEAL_AFTER_S", "0")
    monkeypatch.setenv("GUANACO_HEALTH_MAX_HEALS_PER_HOUR", "1")
    submission_id = deploy_on(store, health_server.endpoint_url, "org/doomed-twice")
    health_server.kill()
    _dies(store, submission_id, health_server.endpoint_url)
    with DagsterInstance.ephemeral() as instance:
        first = _heal_tick(store, tmp_path / "servers", instance)
        assert len(first.run_requests) == 1
        # The heal run redeploys it (what live_deployment and latency_report record), and it dies again.
        replacement = start_health_server(tmp_path / "www2")
        with store.session() as session:
            start_stage(session, submission_id, Status.DEPLOYING)
            get_submission(session, submission_id).endpoint_url = replacement.endpoint_url
            start_stage(session, submission_id, Status.STRESS_TESTING)
            transition(session, submission_id, Status.DEPLOYED)
        replacement.kill()
        _dies(store, submission_id, replacement.endpoint_url)
        second = _heal_tick(store, tmp_path / "servers", instance)
    assert isinstance(second, SkipReason)
    with store.session() as session:
        submission = get_submission(session, submission_id)
        assert submission.status == Status.FAILED
        assert submission.failure_reason.startswith(
            "the model server stopped answering its health check (unreachable:"
        )
        assert "died 2 times within an hour and was restarted 1 times" in submission.failure_reason
        assert [e.status for e in submission.events][-1] == Status.FAILED


def test_a_failed_first_reply_with_no_other_model_keeps_the_users_message(sqlite_store, health_server):
    from guanaco_dagster.beta.conversations import send_message
    from guanaco_dagster.beta.routing import NoModelAvailable

    dead = deploy_on(sqlite_store, health_server.endpoint_url, "org/alone")
    with sqlite_store.session() as session:
        conversation_id = start_conversation(session, user_id="u", submission_id=dead).id
    health_server.kill()
    with pytest.raises(NoModelAvailable, match="no other model is available"):
        send_message(sqlite_store, conversation_id, "Are you there?")
    with sqlite_store.session() as session:
        stored = session.scalars(select(Message.content).where(Message.conversation_id == conversation_id))
        assert list(stored) == ["Are you there?"]
    assert health_of(sqlite_store, dead)[0] is False
