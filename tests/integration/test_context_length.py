"""A model's own context limit reaches the deploy stage: a 512-context Llama passes intake, and the length it
will be served with is 512, not the platform's 2048 (vLLM refuses to start with a longer one)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from dagster import ExecuteInProcessResult

from assets import PIPELINE_ASSETS
from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.deployment.kubernetes_config import KubernetesConfig
from guanaco_dagster.deployment.kubernetes_manifests import serve_args
from guanaco_dagster.stages.context_length import artifact_context_limit, served_max_model_len
from guanaco_dagster.submissions.lifecycle import Status
from tests.fixtures.pipeline import InProcessPipeline, edit_config, model_variant


def _metadata(result: ExecuteInProcessResult, asset_name: str) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node(asset_name)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_a_512_context_llama_passes_intake_and_is_served_with_512_tokens(
    hub_server, s3_server, tiny_model_dir, tmp_path
):
    folder = model_variant(tiny_model_dir, tmp_path, "short-context")
    edit_config(folder, max_position_embeddings=512)
    repo = "context-length/short-llama"
    hub_server.publish(repo, folder)
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    submission_id = pipeline.submit(repo)

    result = pipeline.run(submission_id, selection=PIPELINE_ASSETS[:3])  # intake, tensorize, upload

    assert result.success, pipeline.outcome(submission_id).failure_reason
    assert pipeline.outcome(submission_id).status == Status.UPLOADING
    intake = _metadata(result, "raw_weights")
    # A run that does not deploy starts no server ahead of time.
    assert intake["server_prestarted"] is False
    assert pipeline.recorded_servers() == []
    assert intake["model_context_length"] == 512
    assert "512 tokens (max_position_embeddings)" in intake["checks"]
    uri = _metadata(result, "cached_s3_object")["uri"]
    # What live_deployment computes: the model's limit read back from the cached artifact, capped by the
    # platform's --max-model-len.
    model_limit = artifact_context_limit(s3_server.client(), uri)
    platform_limit = pipeline.resources["deployer"].platform_max_model_len()
    assert (model_limit.tokens, platform_limit) == (512, 2048)
    max_model_len = served_max_model_len(model_limit, platform_limit)
    assert max_model_len == 512
    # The Kubernetes deployer serves what the spec says.
    args = serve_args(DeploymentSpec(submission_id, uri, submission_id, max_model_len), KubernetesConfig())
    assert args[args.index("--max-model-len") + 1] == "512"


def test_a_model_with_a_longer_context_is_served_at_the_platforms_limit(tmp_path):
    spec = DeploymentSpec("long_v1", "s3://guanaco-models/models/" + "f" * 64 + "/", "long_v1", 8192)
    settings = KubernetesConfig(max_model_len=4096)
    args = serve_args(spec, settings)
    assert args[args.index("--max-model-len") + 1] == "4096"


@pytest.mark.vllm
def test_a_512_context_llama_deploys_and_serves_with_its_own_context_length(
    hub_server, s3_server, tiny_model_dir, tmp_path
):
    folder = model_variant(tiny_model_dir, tmp_path, "short-context-deployed")
    edit_config(folder, max_position_embeddings=512, guanaco_test_nonce="deploy-512")
    repo = "context-length/short-llama-deployed"
    hub_server.publish(repo, folder)
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    submission_id = pipeline.submit(repo)
    try:
        result = pipeline.run(submission_id)

        outcome = pipeline.outcome(submission_id)
        assert result.success and outcome.status == Status.DEPLOYED, outcome.failure_reason
        # Its server started when the download did, and is the one that serves.
        assert _metadata(result, "raw_weights")["server_prestarted"] is True
        endpoint = pipeline.deployer().get(submission_id).endpoint_url
        (served,) = httpx.get(f"{endpoint}/models", timeout=10).json()["data"]
        assert served["max_model_len"] == 512
    finally:
        pipeline.deployer().teardown_all()
