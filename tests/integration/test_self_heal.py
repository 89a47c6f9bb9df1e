"""A real vLLM server killed under a deployed model: users never meet it, and Dagster brings it back.

One model ("the victim") goes through the real pipeline into the service's store and serves beta users
next to a steady model on the session's vLLM server; then its server's process groups get SIGKILL. Two
vLLM start-ups in all (the first deploy and one heal); the tests share them and run in file order.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dagster import RunRequest, SkipReason, build_sensor_context
from sqlalchemy import select

from assets.latency_report import latency_report
from assets.live_deployment import live_deployment
from guanaco_dagster.beta.conversations import start_conversation
from guanaco_dagster.beta.health import HealthSettings
from guanaco_dagster.beta.self_heal import HEAL_MESSAGE
from guanaco_dagster.deployment.local_process import process_group_members, server_process_groups
from guanaco_dagster.ports import wait_until
from guanaco_dagster.store.models import Conversation, Message
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import get_submission
from resources.health import HealthResource
from sensors.self_heal_sensor import self_heal_sensor
from tests.fixtures.pipeline import InProcessPipeline


@dataclass(frozen=True)
class Victim:
    pipeline: InProcessPipeline
    submission_id: str


@pytest.fixture(scope="module")
def steady_model(service, served_tiny_model) -> str:
    """A deployed model on the session's vLLM server: where conversations go when the victim dies."""
    return service.deployed_submission(
        service.alice_key,
        served_tiny_model.endpoint_url,
        served_tiny_model.served_model_name,
        "alice/stays-up",
    )


@pytest.fixture(scope="module")
def victim(service, hub_server, s3_server, tmp_path_factory, steady_model) -> Iterator[Victim]:
    """The tiny model taken through the whole pipeline into the service's store: deployed, serving."""
    pipeline = InProcessPipeline.create(
        tmp_path_factory.mktemp("self-heal-home"), hub_server, s3_server, database_url=service.store.url
    )
    submission_id = pipeline.submit(hub_server.repo_id, developer="victor")
    pipeline.run(submission_id)
    assert pipeline.outcome(submission_id).status == Status.DEPLOYED, pipeline.outcome(submission_id)
    yield Victim(pipeline, submission_id)
    pipeline.deployer().teardown_all()


def pinned_conversation(service, submission_id: str) -> str:  # noqa: ANN001
    """A conversation routing gave to `submission_id` (as it would an instant before the server died)."""
    with service.store.session() as session:
        return start_conversation(session, user_id="app-user", submission_id=submission_id).id


def kill_server(victim: Victim) -> None:
    """SIGKILL every process group of the victim's server, as an OOM kill of the whole server would."""
    pid = victim.pipeline.deployer().get(victim.submission_id).details["pid"]
    groups = server_process_groups(pid)
    for pgid in groups:
        os.killpg(pgid, signal.SIGKILL)
    wait_until(lambda: not any(process_group_members(g) for g in groups), timeout_s=10, what="server death")


def health_ok(service, submission_id: str) -> bool | None:  # noqa: ANN001
    with service.store.session() as session:
        return get_submission(session, submission_id).health_ok


@dataclass(frozen=True)
class Death:
    left_routing_after_s: float
    routed_after: list[str]
    chatted_conversation: str
    unanswered_conversation: str


@pytest.fixture(scope="module")
def death(service, victim) -> Death:
    """Two conversations on the victim (one has had a reply, one not yet); then its server is killed."""
    beta = service.beta_client()
    chatted = pinned_conversation(service, victim.submission_id)
    first = beta.post(f"/beta/conversations/{chatted}/messages", json={"message": "Hello!"})
    assert first.status_code == 200, first.text
    unanswered = pinned_conversation(service, victim.submission_id)
    kill_server(victim)
    killed = time.monotonic()
    wait_until(lambda: health_ok(service, victim.submission_id) is False, timeout_s=15, what="failed check")
    left_after = time.monotonic() - killed
    routed = [
        beta.post("/beta/conversations", json={"user_id": "u"}).json()["submission_id"] for _ in range(10)
    ]
    return Death(left_after, routed, chatted, unanswered)


def test_a_killed_model_server_leaves_routing_within_5_s(death, victim):
    assert death.left_routing_after_s < 5.0
    assert victim.submission_id not in death.routed_after


def test_a_conversation_routed_to_the_server_as_it_died_is_answered_by_another_model(service, death, victim):
    reply = service.beta_client().post(
        f"/beta/conversations/{death.unanswered_conversation}/messages", json={"message": "Hi, who are you?"}
    )
    assert reply.status_code == 200, reply.text
    assert isinstance(reply.json()["reply"], str)
    with service.store.session() as session:
        assert session.get(Conversation, death.unanswered_conversation).submission_id != victim.submission_id


def test_a_server_dying_later_in_a_conversation_gets_503_asking_for_a_new_one_and_keeps_the_message(
    service, death
):
    conversation_id = death.chatted_conversation
    reply = service.beta_client().post(
        f"/beta/conversations/{conversation_id}/messages", json={"message": "Still there?"}
    )
    assert reply.status_code == 503
    assert "start a new conversation" in reply.json()["detail"]
    with service.store.session() as session:
        messages = session.scalars(
            select(Message.sender).where(Message.conversation_id == conversation_id).order_by(Message.id)
        )
        assert list(messages) == ["user", "bot", "user"]
        last = session.scalar(
            select(Message.content)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.id.desc())
        )
        assert last == "Still there?"


def heal_resources(pipeline: InProcessPipeline) -> dict[str, object]:
    """The self-heal sensor's resources, as the platform configures them (health: from the environment)."""
    resources = {name: pipeline.resources[name] for name in ("store", "deployer", "s3_cache")}
    return {**resources, "health": HealthResource(**HealthSettings().model_dump())}


@dataclass(frozen=True)
class Heal:
    sensor_result: object
    run_succeeded: bool
    old_endpoint: str


@pytest.fixture(scope="module")
def heal(death, victim) -> Heal:
    """The self-heal sensor's tick on the dead victim, then the run it asks for, executed in-process."""
    pipeline = victim.pipeline
    with pipeline.store.session() as session:
        old_endpoint = get_submission(session, victim.submission_id).endpoint_url
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GUANACO_HEALTH_HEAL_AFTER_S", "0")
        with build_sensor_context(instance=pipeline.instance, resources=heal_resources(pipeline)) as context:
            result = self_heal_sensor(context)
    ran = pipeline.run(victim.submission_id, selection=[live_deployment, latency_report])
    return Heal(result, ran.success, old_endpoint)


def test_the_self_heal_sensor_requests_one_run_that_redeploys_the_model_from_the_s3_cache(
    service, heal, victim
):
    # The session's store holds other tests' models too (dead endpoints): look at the victim's request.
    (request,) = [r for r in heal.sensor_result.run_requests if r.partition_key == victim.submission_id]
    assert isinstance(request, RunRequest) and request.run_key == f"{victim.submission_id}#heal-1"
    assert heal.run_succeeded
    with service.store.session() as session:
        submission = get_submission(session, victim.submission_id)
        assert submission.status == Status.DEPLOYED
        assert submission.endpoint_url != heal.old_endpoint  # a new server
        messages = [event.message for event in submission.events]
        assert any(message.startswith(HEAL_MESSAGE) for message in messages)
    conversation_id = pinned_conversation(service, victim.submission_id)
    reply = service.beta_client().post(
        f"/beta/conversations/{conversation_id}/messages", json={"message": "Hi"}
    )
    assert reply.status_code == 200, reply.text
    with service.store.session() as session:
        assert session.get(Conversation, conversation_id).submission_id == victim.submission_id


def test_a_model_whose_server_keeps_dying_is_failed_with_the_cause_once_its_heal_budget_is_spent(
    service, heal, victim
):
    kill_server(victim)
    wait_until(lambda: health_ok(service, victim.submission_id) is False, timeout_s=15, what="failed check")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GUANACO_HEALTH_HEAL_AFTER_S", "0")
        env.setenv("GUANACO_HEALTH_MAX_HEALS_PER_HOUR", "1")
        resources = heal_resources(victim.pipeline)
        with build_sensor_context(instance=victim.pipeline.instance, resources=resources) as context:
            result = self_heal_sensor(context)
    assert isinstance(result, SkipReason)
    with service.store.session() as session:
        submission = get_submission(session, victim.submission_id)
        assert submission.status == Status.FAILED
        assert "the model server died 2 times within an hour and was restarted 1 times" in (
            submission.failure_reason
        )
        assert not submission.failure_reason.startswith(":")  # the cause comes first
    assert victim.pipeline.recorded_servers() == []
