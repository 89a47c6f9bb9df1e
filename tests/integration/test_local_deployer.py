"""Local deployments: one `inference.serve` process group per submission, found, reused and stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from guanaco_dagster.deployment.base import DeploymentError, DeploymentSpec
from guanaco_dagster.deployment.local_process import (
    SPARE_ID,
    LocalProcessDeployer,
    process_group_members,
    process_tree,
    server_process_groups,
)
from guanaco_dagster.ports import wait_until
from guanaco_dagster.stages.stress import Slo, StressConfig, run_stress_test
from tests.fixtures.s3 import S3Info
from tests.fixtures.vllm import ServedModel, make_test_deployer, processes_mentioning

pytestmark = pytest.mark.vllm


def _launch_until_vllm_runs(deployer: LocalProcessDeployer, spec: DeploymentSpec) -> set[int]:
    """Launch without waiting for health; once vLLM runs under the server, return their process groups."""
    deployer.launch(spec)
    pid = json.loads(deployer.state_path(spec.submission_id).read_text())["pid"]
    wait_until(lambda: len(process_tree(pid)) >= 2, timeout_s=60, what="vLLM child process")
    return server_process_groups(pid)


def _running(groups: set[int]) -> list[int]:
    return [pid for pgid in groups for pid in process_group_members(pgid)]


def test_deployment_has_an_openai_endpoint_and_its_startup_time(served_tiny_model: ServedModel) -> None:
    deployment = served_tiny_model.deployment

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", deployment.endpoint_url)
    assert deployment.submission_id == served_tiny_model.spec.submission_id
    assert deployment.startup_s > 0
    assert deployment.details["artifact_uri"] == served_tiny_model.artifact_uri
    assert httpx.get(deployment.endpoint_url.removesuffix("/v1") + "/health", timeout=5).status_code == 200


def test_the_kv_cache_holds_the_stress_concurrency_at_full_context_not_a_gib(
    served_tiny_model: ServedModel,
) -> None:
    log = Path(served_tiny_model.deployment.details["log_path"]).read_text(errors="replace")

    # vLLM's own account of the cache it allocated (the sample model: 512 bytes per token).
    size = re.search(
        r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x", log
    )
    assert size, "vLLM did not report its KV cache size"
    tokens, per_request, concurrency = (
        int(size[1].replace(",", "")),
        int(size[2].replace(",", "")),
        float(size[3]),
    )
    assert per_request == 2048
    assert concurrency >= StressConfig().stress_concurrency
    assert tokens * 512 < 64 * 1024**2  # megabytes, where the flat setting reserved 1 GiB
    assert served_tiny_model.deployment.details["kv_cache_tokens"] == 2048 * StressConfig().stress_concurrency


def test_the_sample_model_passes_the_stress_test_with_its_small_cache(served_tiny_model: ServedModel) -> None:
    config = StressConfig()

    report = run_stress_test(served_tiny_model.endpoint_url, served_tiny_model.served_model_name, config)

    assert report.errors == 0, report.error_samples
    assert report.requests == config.stress_requests
    assert report.latency_p95_s <= Slo().slo_latency_p95_s


def test_the_model_runs_in_the_engine_process_and_its_memory_is_reported(
    served_tiny_model: ServedModel,
) -> None:
    details = served_tiny_model.deployment.details
    log = Path(details["log_path"]).read_text(errors="replace")

    assert "(EngineCore pid=" in log
    assert "(Worker pid=" not in log  # the `uni` executor: no worker process, one torch import fewer
    memory = details["memory"]
    assert 0 < memory["pss_mib"] <= memory["rss_mib"]
    assert memory["processes"] >= 3  # inference.serve, vLLM's API server, its engine


def test_the_engine_process_running_the_model_is_bound_to_the_cores_the_server_was_given(
    served_tiny_model: ServedModel,
) -> None:
    details = served_tiny_model.deployment.details
    engines = [
        pid
        for pid in process_tree(details["pid"])
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"VLLM::EngineCore")
    ]

    assert len(engines) == 1
    status = Path(f"/proc/{engines[0]}/status").read_text()
    allowed = re.search(r"Cpus_allowed_list:\s*(\S+)", status)
    assert allowed and allowed[1] == ",".join(map(str, details["cpu_cores"]))


def test_vllm_keeps_its_model_info_cache_where_the_deployer_says(served_tiny_model: ServedModel) -> None:
    cache_root = Path(served_tiny_model.deployer.server_environment()["VLLM_CACHE_ROOT"])

    assert list((cache_root / "modelinfos").glob("*LlamaForCausalLM.json"))


def test_deploying_a_running_submission_again_returns_the_same_server(
    served_tiny_model: ServedModel, s3_server: S3Info
) -> None:
    # A new deployer over the same state folder, as a later Dagster run would build.
    deployer = make_test_deployer(s3_server, served_tiny_model.deployer.state_dir)

    started = time.monotonic()
    again = deployer.deploy(served_tiny_model.spec)

    assert time.monotonic() - started < 5
    assert again.endpoint_url == served_tiny_model.endpoint_url
    assert again.details["pid"] == served_tiny_model.deployment.details["pid"]


def test_get_finds_the_running_deployment_and_nothing_for_unknown_ids(served_tiny_model: ServedModel) -> None:
    deployer = served_tiny_model.deployer

    found = deployer.get(served_tiny_model.spec.submission_id)

    assert found is not None and found.endpoint_url == served_tiny_model.endpoint_url
    assert deployer.get("never-deployed") is None
    assert served_tiny_model.spec.submission_id in deployer.list_submission_ids()


@pytest.mark.parametrize("prestarted", [False, True], ids=["started-by-deploy", "prestarted"])
def test_missing_artifact_fails_with_a_readable_reason_and_leaves_nothing_running(
    s3_server: S3Info, tmp_path: Path, prestarted: bool
) -> None:
    deployer = make_test_deployer(s3_server, tmp_path / "servers")
    missing_uri = f"s3://{s3_server.bucket}/models/{'f' * 64}/"
    if prestarted:
        assert deployer.prestart("broken-artifact") is True

    with pytest.raises(DeploymentError) as failure:
        deployer.deploy(DeploymentSpec("broken-artifact", missing_uri, "broken"))

    message = str(failure.value)
    assert f"no artifact at {missing_uri}" in message.splitlines()[0]
    assert "last lines of" in message
    assert deployer.get("broken-artifact") is None
    assert deployer.list_submission_ids() == []
    assert processes_mentioning(missing_uri) == []


def test_start_up_timeout_fails_with_the_log_and_leaves_nothing_running(
    s3_server: S3Info, tiny_artifact_uri: str, tmp_path: Path
) -> None:
    deployer = make_test_deployer(s3_server, tmp_path / "servers", startup_timeout_s=1.0)

    with pytest.raises(DeploymentError, match="was not healthy after 1 s") as failure:
        deployer.deploy(DeploymentSpec("too-slow", tiny_artifact_uri, "too-slow"))

    assert "guanaco-serve" in str(failure.value)  # the log tail
    assert deployer.list_submission_ids() == []
    assert processes_mentioning("--served-model-name too-slow") == []


def test_teardown_stops_the_whole_process_group(
    s3_server: S3Info, tiny_artifact_uri: str, tmp_path: Path
) -> None:
    deployer = make_test_deployer(s3_server, tmp_path / "servers")
    spec = DeploymentSpec("torn-down", tiny_artifact_uri, "torn-down")
    try:
        groups = _launch_until_vllm_runs(deployer, spec)
        assert len(groups) == 2  # inference.serve's, and vLLM's own

        assert deployer.teardown("torn-down") is True

        assert _running(groups) == []
        assert deployer.get("torn-down") is None
        assert deployer.list_submission_ids() == []
        assert deployer.teardown("torn-down") is False
    finally:
        deployer.teardown_all()


def test_server_exits_when_the_watched_platform_process_dies(
    s3_server: S3Info, tiny_artifact_uri: str, tmp_path: Path
) -> None:
    platform = subprocess.Popen(["sleep", "300"])
    deployer = make_test_deployer(s3_server, tmp_path / "servers", platform_pid=platform.pid)
    spec = DeploymentSpec("watched", tiny_artifact_uri, "watched")
    try:
        groups = _launch_until_vllm_runs(deployer, spec)

        platform.kill()
        platform.wait()

        wait_until(lambda: _running(groups) == [], timeout_s=30, what="server exit")
        log = deployer.log_path("watched").read_text()
        assert f"watched pid {platform.pid} exited" in log
        config_dir = re.search(r"config/tokenizer files of \S+ to (\S+)", log)
        assert config_dir and not Path(config_dir.group(1)).exists()
    finally:
        platform.kill()
        deployer.teardown("watched")


def _server_log(deployer: LocalProcessDeployer, submission_id: str) -> str:
    return deployer.log_path(submission_id).read_text(errors="replace")


def test_a_prestarted_server_imports_vllm_first_and_serves_once_deploy_names_its_artifact(
    s3_server: S3Info, tiny_artifact_uri: str, tmp_path: Path
) -> None:
    deployer = make_test_deployer(s3_server, tmp_path / "servers")
    spec = DeploymentSpec("prestarted", tiny_artifact_uri, "prestarted")
    try:
        prestarted_at = time.monotonic()
        assert deployer.prestart("prestarted") is True
        assert deployer.prestart("prestarted") is False  # one server per submission
        pid = json.loads(deployer.state_path("prestarted").read_text())["pid"]
        # vLLM imports before anyone knows the model, and serves nothing meanwhile.
        wait_until(lambda: "vLLM imported" in _server_log(deployer, "prestarted"), 180, what="vLLM imports")
        imports_s = time.monotonic() - prestarted_at
        assert deployer.get("prestarted") is None

        deployment = deployer.deploy(spec)

        assert deployment.details["pid"] == pid  # the prestarted server, not a new one
        completion = httpx.post(
            f"{deployment.endpoint_url}/completions",
            json={"model": "prestarted", "prompt": "Hello", "max_tokens": 3},
            timeout=60,
        )
        assert completion.status_code == 200, completion.text
        log = _server_log(deployer, "prestarted")
        assert "engine processes fork from a preloaded forkserver" in log
        # Its KV cache is sized from the model named late, not the fixed GiB a server starts without one.
        size = re.search(r"KV cache size: ([\d,]+) tokens", log)
        assert size and int(size[1].replace(",", "")) * 512 < 64 * 1024**2
        assert f"artifact named by {deployer.artifact_file('prestarted')}: {tiny_artifact_uri}" in log
        # Its start-up counts from the naming: the imports before it were off the critical path.
        assert 0 < deployment.startup_s < time.monotonic() - prestarted_at - imports_s
    finally:
        deployer.teardown("prestarted")


def test_a_prestarted_server_whose_intake_fails_is_stopped_by_teardown_and_leaves_nothing(
    s3_server: S3Info, tmp_path: Path
) -> None:
    deployer = make_test_deployer(s3_server, tmp_path / "servers")
    deployer.prestart("failed-intake")
    pid = json.loads(deployer.state_path("failed-intake").read_text())["pid"]
    wait_until(lambda: len(process_tree(pid)) >= 2, timeout_s=60, what="vLLM child process")
    groups = server_process_groups(pid)

    assert deployer.teardown("failed-intake") is True

    assert _running(groups) == []
    assert not deployer.work_path("failed-intake").exists()
    assert deployer.list_submission_ids() == []


def test_a_prestarted_server_never_named_an_artifact_exits_by_itself(
    s3_server: S3Info, tmp_path: Path
) -> None:
    deployer = make_test_deployer(s3_server, tmp_path / "servers", prestart_timeout_s=2.0)
    deployer.prestart("abandoned")
    pid = json.loads(deployer.state_path("abandoned").read_text())["pid"]
    wait_until(lambda: len(process_tree(pid)) >= 2, timeout_s=60, what="vLLM child process")
    groups = server_process_groups(pid)

    wait_until(lambda: _running(groups) == [], timeout_s=60, what="the abandoned server's exit")

    assert "stopping vLLM: no artifact came within 2 s" in _server_log(deployer, "abandoned")
    assert deployer.get("abandoned") is None
    deployer.teardown("abandoned")


def test_a_spare_server_is_adopted_by_the_next_submission_and_replaced_once_it_serves(
    s3_server: S3Info, tiny_artifact_uri: str, tmp_path: Path
) -> None:
    deployer = make_test_deployer(s3_server, tmp_path / "servers", keep_spare=True)
    try:
        assert deployer.ensure_spare() is True
        assert deployer.spare_warm() is False  # still importing vLLM
        assert deployer.ensure_spare() is False  # one spare at a time
        spare_pid = json.loads(deployer.state_path(SPARE_ID).read_text())["pid"]
        assert deployer.list_submission_ids() == []  # it serves no submission
        wait_until(deployer.spare_warm, timeout_s=180, what="the spare's imports")

        assert deployer.prestart("adopter") is True
        deployment = deployer.deploy(DeploymentSpec("adopter", tiny_artifact_uri, "adopter"))

        assert deployment.details["pid"] == spare_pid  # the spare serves it: nothing new was started
        completion = httpx.post(
            f"{deployment.endpoint_url}/completions",
            json={"model": "adopter", "prompt": "Hello", "max_tokens": 3},
            timeout=60,
        )
        assert completion.status_code == 200, completion.text
        assert "artifact named by" in _server_log(deployer, "adopter")  # its log moved with it
        # The next submission finds a new spare waiting.
        replacement = json.loads(deployer.state_path(SPARE_ID).read_text())
        assert replacement["pid"] != spare_pid
        assert process_tree(replacement["pid"])
        groups = server_process_groups(replacement["pid"])

        assert deployer.teardown_all() == 1

        assert not deployer.state_path(SPARE_ID).exists()
        assert _running(groups) == []
    finally:
        deployer.teardown_all()


def test_teardown_all_forgets_every_recorded_server(s3_server: S3Info, tmp_path: Path) -> None:
    deployer = make_test_deployer(s3_server, tmp_path / "servers")
    for name in ("first", "second"):
        deployer.launch(DeploymentSpec(name, f"s3://{s3_server.bucket}/models/{name}/", name))

    assert deployer.teardown_all() == 2

    assert deployer.list_submission_ids() == []


# A stand-in server that does what inference.serve does with its folders: a temporary config folder under
# --work-dir, removed on a clean exit (never, when killed outright).
FOLDER_KEEPING_SERVER = r"""
import sys, tempfile, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
argv = sys.argv[1:]
tempfile.mkdtemp(prefix="guanaco-serve-", dir=argv[argv.index("--work-dir") + 1])

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(argv[argv.index("--port") + 1])), Health).serve_forever()
"""


class FolderKeepingDeployer(LocalProcessDeployer):
    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, "http://127.0.0.1:9", "unused", "unused", smoke_test=False)

    def serve_command(self, spec: DeploymentSpec, port: int) -> list[str]:
        real = super().serve_command(spec, port)
        return [real[0], "-c", FOLDER_KEEPING_SERVER, *real[3:]]


def test_a_server_killed_outright_leaves_no_temporary_folder_behind(tmp_path: Path) -> None:
    deployer = FolderKeepingDeployer(tmp_path / "servers")
    spec = DeploymentSpec("killed-9", "s3://unused/", "killed-9")
    deployment = deployer.deploy(spec)
    work = deployer.work_path("killed-9")
    assert [p.name[:14] for p in work.iterdir()] == ["guanaco-serve-"]

    for group in server_process_groups(deployment.details["pid"]):
        os.killpg(group, signal.SIGKILL)
    deployer.teardown("killed-9")

    assert not work.exists()
    assert deployer.list_submission_ids() == []
