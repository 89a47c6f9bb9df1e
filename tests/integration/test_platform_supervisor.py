"""`guanaco up` is a supervisor, not a domino: a killed child comes back, model servers keep serving, a
stop and a start bring deployed models back with the same beta token, and a model server sees none of the
platform's secrets.

One embedded platform (its own SeaweedFS, Dagster code server, daemon and webserver, the service) and one
model taken through the real pipeline are shared by the whole module, in order: the daemon is killed while
that model deploys, then each other child is killed under it, then the platform is stopped and started again.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from guanaco_dagster.deployment.local_process import process_start_ticks, process_tree
from guanaco_dagster.embedded.platform import EmbeddedPlatform
from guanaco_dagster.ports import free_port, port_open, wait_until
from guanaco_dagster.settings import Settings
from guanaco_dagster.stages.s3_client import make_s3_client
from guanaco_dagster.store.database import Store
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission, get_submission
from guanaco_dagster.testing.beta_users import simulate_user_over_http
from guanaco_dagster.testing.watch import wait_for_outcome, wait_for_summary_in_dagster

pytestmark = [pytest.mark.vllm, pytest.mark.e2e]

# Secrets of the platform process that no model server may see.
DEVELOPER_KEY = "gk-developer-key-that-must-not-leak"
BETA_TOKEN = "beta-token-that-must-not-leak"


@dataclass
class PlatformRun:
    """The module's platform (replaced when a test restarts it) and the model it deployed."""

    settings: Settings
    platform: EmbeddedPlatform
    submission_id: str = ""

    @property
    def store(self) -> Store:
        return Store(self.settings.resolved_database_url)

    def submission(self):  # noqa: ANN201 - a detached Submission row
        with self.store.session() as session:
            submission = get_submission(session, self.submission_id)
            session.expunge(submission)
            return submission

    def server_pid(self) -> int:
        deployment = self.platform.deployer().get(self.submission_id)
        assert deployment is not None, "the model server is not running"
        return deployment.details["pid"]


@pytest.fixture(scope="module")
def run(hub_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformRun]:
    home = tmp_path_factory.mktemp("supervised-platform")
    settings = Settings(
        home=home,
        hf_endpoint=hub_server.endpoint,
        beta_service_token=BETA_TOKEN,
        stress_requests=8,
        stress_concurrency=4,
    )
    with pytest.MonkeyPatch.context() as env:
        # In the platform's environment, as an operator's shell would have it.
        env.setenv("GUANACO_KEY", DEVELOPER_KEY)
        platform = EmbeddedPlatform(
            settings, webserver_port=free_port(), service_port=free_port(), hf_endpoint=hub_server.endpoint
        )
        platform.start()
        holder = PlatformRun(settings=settings, platform=platform)
        try:
            yield holder
        finally:
            holder.platform.stop()


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _wait_for_restart(platform: EmbeddedPlatform, name: str, timeout_s: float = 120.0) -> None:
    wait_until(
        lambda: platform.supervisor.restarts[name] >= 1, timeout_s=timeout_s, what=f"the {name} restarted"
    )


class ModelWatch:
    """Ask the model server for /health every 0.2 s in the background; count the failed answers."""

    def __init__(self, endpoint_url: str) -> None:
        self.health_url = endpoint_url.removesuffix("/v1") + "/health"
        self.checks = self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self.checks += 1
            try:
                healthy = httpx.get(self.health_url, timeout=2.0).status_code == 200
            except httpx.HTTPError:
                healthy = False
            self.failures += 0 if healthy else 1

    def __enter__(self) -> ModelWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _complete(endpoint_url: str, model: str) -> str:
    response = httpx.post(
        f"{endpoint_url}/completions", json={"model": model, "prompt": "Hello", "max_tokens": 4}, timeout=60
    )
    response.raise_for_status()
    return response.json()["choices"][0]["text"]


def test_a_submission_in_flight_reaches_deployed_although_the_daemon_was_killed(run: PlatformRun, hub_server):
    with run.store.session() as session:
        developer = get_or_create_developer(session, "supervised")
        submission = create_submission(session, developer, SubmissionRequest(model_repo=hub_server.repo_id))
        run.submission_id = submission.id
    wait_until(
        lambda: run.submission().status == Status.DEPLOYING, timeout_s=240, what="the submission deploying"
    )
    daemon_pid = run.platform.child_pid("daemon")

    _kill(daemon_pid)

    _wait_for_restart(run.platform, "daemon")
    assert run.platform.child_pid("daemon") not in (None, daemon_pid)
    assert wait_for_outcome(run.store, run.submission_id, timeout_s=600) == Status.DEPLOYED
    submission = run.submission()
    assert _complete(submission.endpoint_url, submission.served_model_name)
    assert "daemon exited with code -9 (SIGKILL)" in run.platform.platform_log_path.read_text()


@pytest.mark.parametrize("child", ["webserver", "service", "s3", "code_server"])
def test_a_killed_child_is_restarted_and_the_model_keeps_serving(run: PlatformRun, child: str):
    server_pid = run.server_pid()
    server_ticks = process_start_ticks(server_pid)
    old_pid = run.platform.child_pid(child)
    with ModelWatch(run.submission().endpoint_url) as watch:
        _kill(old_pid)
        _wait_for_restart(run.platform, child)
        port = {"webserver": run.platform.webserver_port, "service": run.platform.service_port}.get(child)
        if port:
            wait_until(lambda: port_open("127.0.0.1", port), timeout_s=120, what=f"the {child} answering")
        time.sleep(1.0)

    assert watch.checks > 5 and watch.failures == 0
    assert process_start_ticks(server_pid) == server_ticks, "the model server was restarted"
    assert run.platform.supervisor.restarts[child] == 1
    assert run.platform.child_pid(child) not in (None, old_pid)
    log = run.platform.platform_log_path.read_text()
    assert f"{child} exited with code -9 (SIGKILL)" in log and f"{child} is running again" in log


def test_the_restarted_service_still_routes_beta_users_to_the_model(run: PlatformRun):
    beta = httpx.Client(
        base_url=run.platform.service_url, headers={"Authorization": f"Bearer {BETA_TOKEN}"}, timeout=60
    )
    conversation = beta.post("/beta/conversations", json={"user_id": "app-user-1", "bot_id": "nova"})
    assert conversation.status_code == 200, conversation.text
    assert conversation.json()["submission_id"] == run.submission_id


def test_feedback_after_the_code_server_was_restarted_is_summarised_in_dagster(run: PlatformRun):
    # The daemon and the webserver reach the restarted code server; its run workers start and finish.
    beta = httpx.Client(
        base_url=run.platform.service_url, headers={"Authorization": f"Bearer {BETA_TOKEN}"}, timeout=60
    )

    chat = simulate_user_over_http(beta, user_index=7, turns=1)

    assert chat.submission_id == run.submission_id
    wait_for_summary_in_dagster(run.platform.dagster_home, run.submission_id, timeout_s=120)


def test_the_restarted_s3_server_still_holds_the_cached_artifact(run: PlatformRun):
    settings = run.settings
    client = make_s3_client(
        run.platform.env["GUANACO_S3_ENDPOINT"],
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
    )
    prefix = run.submission().artifact_uri.split(f"s3://{settings.s3_bucket}/", 1)[1]
    keys = [
        item["Key"] for item in client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)["Contents"]
    ]
    assert any(key.endswith(".tensors") for key in keys)


def _environments(pid: int) -> dict[int, dict[str, str]]:
    environments = {}
    for member in process_tree(pid):
        try:
            raw = Path(f"/proc/{member}/environ").read_bytes()
        except OSError:
            continue
        pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
        environments[member] = {key.decode(): value.decode(errors="replace") for key, value in pairs}
    return environments


def test_a_model_server_sees_only_allow_listed_variables_and_s3_read_credentials(run: PlatformRun):
    server_pid = run.server_pid()
    environments = _environments(server_pid)

    assert len(environments) >= 3  # inference.serve, vLLM's API server, its engine and worker processes
    for pid, environment in environments.items():
        leaked = {name for name in environment if name.startswith("GUANACO_")}
        assert not leaked, f"process {pid} sees {sorted(leaked)}"
        for secret in (DEVELOPER_KEY, BETA_TOKEN, run.settings.resolved_database_url):
            assert all(secret not in value for value in environment.values()), f"process {pid} sees a secret"
    server_env = environments[server_pid]
    assert server_env["AWS_ACCESS_KEY_ID"] == run.settings.s3_access_key_id
    assert {"PATH", "HOME", "AWS_ENDPOINT_URL_S3", "VLLM_CPU_OMP_THREADS_BIND"} <= set(server_env)


def test_a_model_server_decodes_on_the_core_it_was_given(run: PlatformRun):
    deployment = run.platform.deployer().get(run.submission_id)
    cores = deployment.details["cpu_cores"]
    log = Path(deployment.details["log_path"]).read_text(errors="replace")

    assert re.search(rf"core ids=\[{', '.join(map(str, cores))}\]", log), "vLLM bound other cores"
    assert cores == [sorted(os.sched_getaffinity(0))[0]]


def test_after_a_stop_and_a_start_the_deployed_model_serves_again_with_the_same_beta_token(
    run: PlatformRun, hub_server
):
    old_endpoint = run.submission().endpoint_url
    token_path = run.platform.beta_token_path
    run.platform.stop()
    assert run.submission().status == Status.DEPLOYED
    assert run.submission().endpoint_url is None  # nothing routes to the stopped server

    # The operator starts it again without setting a token: the saved one is reused.
    settings = run.settings.model_copy(update={"beta_service_token": None})
    run.platform = EmbeddedPlatform(settings, service_port=free_port(), hf_endpoint=hub_server.endpoint)
    run.platform.start()
    outcomes = run.platform.wait_until_restored(timeout_s=300)

    assert outcomes[run.submission_id].startswith("server restarted from the S3 cache")
    submission = run.submission()
    assert submission.status == Status.DEPLOYED and submission.endpoint_url not in (None, old_endpoint)
    assert run.platform.beta_token == BETA_TOKEN
    assert token_path.stat().st_mode & 0o777 == 0o600
    beta = httpx.Client(
        base_url=run.platform.service_url, headers={"Authorization": f"Bearer {BETA_TOKEN}"}, timeout=60
    )
    conversation = beta.post("/beta/conversations", json={"user_id": "app-user-2", "bot_id": "nova"}).json()
    reply = beta.post(
        f"/beta/conversations/{conversation['conversation_id']}/messages", json={"message": "Hello!"}
    )
    assert reply.status_code == 200, reply.text
    assert conversation["submission_id"] == run.submission_id
