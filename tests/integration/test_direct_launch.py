"""The service launches runs through the Dagster webserver at once; the sensors never launch them twice.

A real webserver (subprocess) serves the code location; the sensor ticks are the daemon's own code
(`execute_sensor_iteration`) against the same instance. No daemon dequeues runs here, so every launched run
stays queued: "in flight" for as long as a test needs.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance, DagsterRun, RunsFilter
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.sensor import execute_sensor_iteration
from fastapi.testclient import TestClient

from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.embedded.platform import prepare_dagster_storage, write_dagster_config
from guanaco_dagster.embedded.processes import stop_process_group
from guanaco_dagster.ports import free_port, wait_until
from guanaco_dagster.service import run_launches
from guanaco_dagster.service.app import create_app
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.database import Store
from guanaco_dagster.submissions.developers import create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission, get_submission
from tests.fixtures.store import walk_to

BETA_TOKEN = "beta-token-for-direct-launch"
REPOSITORY_QUERY = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"


@dataclass
class Dagster:
    """A webserver on the code location, its instance, and sensor ticks run as the daemon runs them."""

    graphql_url: str
    instance: DagsterInstance
    workspace: WorkspaceProcessContext
    store: Store
    home: Path
    _last_tick: float = field(default=0.0)

    def tick_sensors(self) -> None:
        """One iteration of the sensor daemon over every sensor (each waits ≥ 1 s between its ticks)."""
        time.sleep(max(0.0, self._last_tick + 1.2 - time.monotonic()))
        list(execute_sensor_iteration(self.workspace, logging.getLogger("sensor-daemon"), None, None))
        self._last_tick = time.monotonic()

    def runs(self, **tags: str) -> list[DagsterRun]:
        return list(self.instance.get_runs(RunsFilter(tags=tags)))

    def feedback_batches(self) -> list[DagsterRun]:
        return list(self.instance.get_runs(RunsFilter(job_name="summarise_feedback_batch")))

    def service(self, graphql_url: str | None) -> TestClient:
        """The service (in this process), launching through `graphql_url`."""
        settings = Settings(
            home=self.home,
            database_url=self.store.url,
            dagster_graphql_url=graphql_url,
            beta_service_token=BETA_TOKEN,
        )
        return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def dagster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dagster]:
    home = tmp_path_factory.mktemp("direct-launch")
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    write_dagster_config(dagster_home)
    prepare_dagster_storage(dagster_home)
    store = Store(f"sqlite:///{home / 'guanaco.db'}").migrate()
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        # The code location (in the webserver's and the test daemon's code servers) reads these.
        env.setenv("DAGSTER_HOME", str(dagster_home))
        env.setenv("GUANACO_HOME", str(home))
        env.setenv("GUANACO_DATABASE_URL", store.url)
        workspace_yaml = str(dagster_home / "workspace.yaml")
        webserver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster_webserver",
                "-w",
                workspace_yaml,
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=home,
            stdout=(home / "webserver.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        graphql_url = f"http://127.0.0.1:{port}/graphql"
        try:
            wait_until(
                lambda: _repository_loaded(graphql_url, webserver, home), timeout_s=300, what="webserver"
            )
            instance = DagsterInstance.from_config(str(dagster_home))
            with create_test_daemon_workspace_context(
                WorkspaceFileTarget([workspace_yaml]), instance
            ) as workspace:
                yield Dagster(graphql_url, instance, workspace, store, home)
            instance.dispose()
        finally:
            stop_process_group(webserver)


def _repository_loaded(graphql_url: str, webserver: subprocess.Popen, home: Path) -> bool:
    if webserver.poll() is not None:
        raise AssertionError(f"webserver exited:\n{(home / 'webserver.log').read_text()[-3000:]}")
    try:
        answer = httpx.post(graphql_url, json={"query": REPOSITORY_QUERY}, timeout=10).json()
    except httpx.HTTPError:
        return False
    return bool(answer.get("data", {}).get("repositoriesOrError", {}).get("nodes"))


@pytest.fixture(autouse=True)
def fresh_runs(dagster: Dagster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no runs, and with no launch decision remembered by the service."""
    for run in dagster.instance.get_runs():
        dagster.instance.delete_run(run.run_id)
    monkeypatch.setattr(run_launches, "_feedback_launches", {})


def _developer_key(store: Store, name: str) -> str:
    with store.session() as session:
        _developer, key = create_developer(session, name)
    return key


def _submit(service: TestClient, key: str, repo: str) -> str:
    answer = service.post(
        "/models/submit", json={"model_repo": repo}, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["submission_id"]


def test_a_submission_launched_by_the_service_is_not_launched_again_by_the_sensor(dagster: Dagster):
    service = dagster.service(dagster.graphql_url)
    submission_id = _submit(service, _developer_key(dagster.store, "ada"), "org/launched-at-once")

    # Queued before any sensor tick, tagged as the sensor's own request would be.
    (run,) = dagster.runs(**{"dagster/partition": submission_id})
    assert run.job_name == "submission_pipeline"
    assert run.tags["dagster/run_key"] == submission_id
    assert run.tags["dagster/sensor_name"] == "submission_sensor"
    assert run.tags["guanaco/submission"] == submission_id
    assert dagster.instance.has_dynamic_partition("submissions", submission_id)

    dagster.tick_sensors()
    dagster.tick_sensors()

    assert [r.run_id for r in dagster.runs(**{"dagster/partition": submission_id})] == [run.run_id]


def test_with_the_webserver_unreachable_the_sensor_still_launches_the_submission_once(dagster: Dagster):
    service = dagster.service(f"http://127.0.0.1:{free_port()}/graphql")
    started = time.monotonic()
    submission_id = _submit(service, _developer_key(dagster.store, "bob"), "org/sensor-safety-net")
    assert time.monotonic() - started < 10
    assert dagster.runs(**{"dagster/partition": submission_id}) == []

    dagster.tick_sensors()
    dagster.tick_sensors()

    (run,) = dagster.runs(**{"dagster/partition": submission_id})
    assert run.tags["dagster/run_key"] == submission_id
    assert "guanaco/launched-by" not in run.tags


def _deployed_conversations(store: Store, repo: str, count: int) -> tuple[str, list[str]]:
    with store.session() as session:
        developer, _key = create_developer(session, f"dev-{repo}")
        submission_id = create_submission(session, developer, SubmissionRequest(model_repo=repo)).id
        walk_to(session, submission_id, Status.DEPLOYED)
        get_submission(session, submission_id).endpoint_url = "http://127.0.0.1:9/v1"
    conversations = []
    for i in range(count):
        with store.session() as session:
            conversations.append(
                start_conversation(session, user_id=f"user-{i}", submission_id=submission_id).id
            )
    return submission_id, conversations


def _post_feedback(service: TestClient, conversation_id: str) -> None:
    answer = service.post(
        f"/beta/conversations/{conversation_id}/feedback",
        json={"thumbs_up": True, "text": "fun"},
        headers={"Authorization": f"Bearer {BETA_TOKEN}"},
    )
    assert answer.status_code == 200, answer.text


def _batch_of(run: DagsterRun) -> list[str]:
    return run.run_config["ops"]["summarise_feedback"]["config"]["submission_ids"]


def test_the_first_feedback_launches_its_summary_at_once_and_no_second_batch_joins_it(dagster: Dagster):
    submission_id, (first, second) = _deployed_conversations(dagster.store, "org/feedback-now", 2)
    service = dagster.service(dagster.graphql_url)

    _post_feedback(service, first)

    (batch,) = dagster.feedback_batches()
    assert _batch_of(batch) == [submission_id]
    assert batch.tags["guanaco/launched-by"] == "service"
    # While it is in flight, neither the sensor nor more feedback puts a second batch beside it.
    dagster.tick_sensors()
    time.sleep(1.1)  # past the service's "not now" memory: it asks Dagster again
    _post_feedback(service, second)
    dagster.tick_sensors()
    assert [run.run_id for run in dagster.feedback_batches()] == [batch.run_id]


def test_feedback_already_waiting_for_the_sensor_is_left_to_the_sensor(dagster: Dagster):
    waiting, (stored_earlier,) = _deployed_conversations(dagster.store, "org/waiting", 1)
    with dagster.store.session() as session:
        leave_feedback(session, stored_earlier, thumbs_up=False, text="dull")
    fresh, (conversation,) = _deployed_conversations(dagster.store, "org/fresh", 1)
    service = dagster.service(dagster.graphql_url)

    _post_feedback(service, conversation)
    assert dagster.feedback_batches() == []

    dagster.tick_sensors()
    (batch,) = dagster.feedback_batches()
    # (Earlier tests' feedback in this module's store is never summarised: no run executes here.)
    assert {waiting, fresh} <= set(_batch_of(batch))
    assert batch.tags["dagster/sensor_name"] == "feedback_sensor"


def test_the_stress_test_launched_at_once_is_the_run_the_stress_test_sensor_would_request(dagster: Dagster):
    """What the deployment step launches as it starts (assets/live_deployment.py): the sensor's run key and
    name, the stress test with its blocking SLO check, and the first summary."""
    from dagster import AssetCheckKey, AssetKey

    from guanaco_dagster.service.dagster_runs import DagsterRuns
    from sensors.stress_test_sensor import stress_test_request

    service = dagster.service(dagster.graphql_url)
    submission_id = _submit(service, _developer_key(dagster.store, "cy"), "org/stress-at-once")
    (pipeline_run,) = dagster.runs(**{"dagster/partition": submission_id})

    runs = DagsterRuns(dagster.graphql_url)
    stress_run_id = runs.launch_stress_test_run(submission_id, pipeline_run.run_id)

    stress_run = dagster.instance.get_run_by_id(stress_run_id)
    wanted = stress_test_request(pipeline_run.run_id, pipeline_run.asset_selection, dict(pipeline_run.tags))
    assert stress_run.tags["dagster/run_key"] == wanted.run_key
    assert stress_run.tags["dagster/sensor_name"] == "stress_test_sensor"
    assert stress_run.tags["dagster/partition"] == submission_id
    assert stress_run.asset_selection == set(wanted.asset_selection)
    assert AssetKey("feedback_summary") in stress_run.asset_selection
    slo_check = AssetCheckKey(AssetKey("latency_report"), "latency_within_slo")
    assert stress_run.asset_check_selection == {slo_check}
