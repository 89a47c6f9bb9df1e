"""A deploy that fails tells the developer vLLM's own cause first, in a few hundred characters, without a
path on the platform's host; the owner reads the server's log through the service."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from assets.live_deployment import live_deployment
from guanaco_dagster.deployment.base import DeploymentError, DeploymentSpec
from guanaco_dagster.deployment.local_process import LocalProcessDeployer
from guanaco_dagster.deployment.server_log import failure_reason
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import get_submission
from resources import DeployerResource
from tests.fixtures.pipeline import InProcessPipeline
from tests.fixtures.store import walk_to

# What vLLM 0.32 prints (colours included) when a checkpoint's context is shorter than --max-model-len.
VLLM_REFUSAL = (
    "\x1b[1;36m(APIServer pid=1)\x1b[0;0m ERROR engine.py:100] EngineCore failed to start.\n"
    "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
    "  Value error, User-specified max_model_len (2048) is greater than the derived max_model_len "
    "(max_position_embeddings=512 or model_max_length=None in model's config.json). To allow overriding "
    "this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. " + "x" * 400 + " [type=value_error, "
    "input_value=ArgsKwargs((), {'model': '/tmp/guanaco-serve-abc/model'}), input_type=ArgsKwargs]\n"
)
REFUSING_SERVER = f"import sys; sys.stderr.write({VLLM_REFUSAL!r}); sys.exit(1)"


class RefusingDeployer(LocalProcessDeployer):
    """The local deployer starting a server that fails the way vLLM does (records and logs are real)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, "http://127.0.0.1:9", "unused", "unused", smoke_test=False)

    def serve_command(self, spec: DeploymentSpec, port: int) -> list[str]:
        return [sys.executable, "-c", REFUSING_SERVER]


def test_the_cause_is_vllms_own_line_without_colours_or_pydantic_noise():
    cause = failure_reason(VLLM_REFUSAL)
    assert cause.startswith("User-specified max_model_len (2048) is greater than the derived max_model_len")
    assert "\x1b" not in cause and "[type=" not in cause and len(cause) <= 300


class RefusingDeployerResource(DeployerResource):
    """The platform's deployer resource, handing out the refusing deployer."""

    def get_deployer(self) -> LocalProcessDeployer:
        return RefusingDeployer(Path(self.state_dir))


def test_a_failed_deploy_names_vllms_cause_first_and_no_host_path(hub_server, s3_server, tmp_path):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    deployer = pipeline.resources["deployer"]
    pipeline.resources["deployer"] = RefusingDeployerResource(**deployer.model_dump())
    submission_id = pipeline.submit("faults/refused-by-vllm")
    with pipeline.store.session() as session:
        walk_to(session, submission_id, Status.UPLOADING)
        get_submission(session, submission_id).artifact_uri = f"s3://{s3_server.bucket}/models/{'e' * 64}/"

    result = pipeline.run(submission_id, selection=[live_deployment])

    assert not result.success
    reason = pipeline.outcome(submission_id).failure_reason
    assert reason.startswith(
        "deploying: the model server exited with code 1 during start-up: User-specified max_model_len (2048) "
        "is greater than the derived max_model_len"
    )
    assert reason.endswith(f"`guanaco logs {submission_id} --server` shows the server's log.")
    assert len(reason) <= 500 and "\n" not in reason and "\x1b" not in reason
    assert str(tmp_path) not in reason
    # The Dagster UI shows the server's log beside the reason.
    (failure,) = pipeline.step_failures(result.run_id).values()
    assert failure == reason
    assert pipeline.outcome(submission_id).status == Status.FAILED


def test_the_owner_reads_the_server_log_through_the_service(service):
    submission_id = service.deployed_submission(
        service.alice_key, "http://127.0.0.1:9/v1", "refused", "alice/refused-model"
    )
    servers = service.log_path.parent / "servers"
    with pytest.raises(DeploymentError):
        RefusingDeployer(servers).deploy(DeploymentSpec(submission_id, "s3://unused/", submission_id))

    with service.client(service.alice_key) as alice:
        log = alice.get(f"/models/{submission_id}/server-log")
    with service.client(service.bob_key) as bob:
        not_bobs = bob.get(f"/models/{submission_id}/server-log")

    assert log.status_code == 200
    assert "User-specified max_model_len (2048)" in log.text and "\x1b" not in log.text
    assert not_bobs.status_code == 404
