"""The bad-submission catalogue, through the real pipeline assets: every refused model ends `failed` with a
reason the developer can act on, and leaves nothing behind (no S3 object, no server; a failed run in the
Dagster UI).

The assets run in-process (`materialize`) against the session's Hub-protocol and SeaweedFS servers; bad
formatters and generation parameters never get that far (the service answers 422).
"""

from __future__ import annotations

import json
import pickle
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    ExecuteInProcessResult,
)
from sqlalchemy import func, select

from assets import PIPELINE_ASSETS
from guanaco_dagster.store.models import Submission
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import get_submission
from tests.fixtures.pipeline import InProcessPipeline, edit_config, model_object_keys, model_variant
from tests.fixtures.vllm import processes_mentioning

# ---------------------------------------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------------------------------------


class _Exploit:
    """A pickle that creates a file when unpickled: proof that refused weights are never loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def _pickle_only(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit(folder.parent / "unpickled")))


def _truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def _corrupt_header(folder: Path) -> None:
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:8] + b"{not json" + data[17:])


def _poison_weights(folder: Path) -> None:
    """One NaN in the last layer's weights: what a diverged fine-tune leaves."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    name = sorted(tensors)[-1]
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _lie_in_header(folder: Path) -> None:
    """Double a 1-D tensor's declared shape, keeping its offsets: the header no longer matches the bytes."""
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name = next(n for n, meta in sorted(header.items()) if n != "__metadata__" and len(meta["shape"]) == 1)
    header[name]["shape"] = [header[name]["shape"][0] * 2]
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    weights.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length :])


def _remove_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()


@dataclass(frozen=True)
class BadCase:
    """A broken repository (or request) and the reason the developer must be given."""

    expected_reason: str
    break_model: Callable[[Path], None] | None = None
    publish: bool = True
    revision: str = "main"
    access: str = "public"  # or "private" / "gated"
    settings: dict[str, Any] | None = None


CASES: dict[str, BadCase] = {
    "repo-does-not-exist": BadCase(
        "not found on the Hub (or it is private and the platform has no access): check the spelling",
        publish=False,
    ),
    "revision-does-not-exist": BadCase(
        "revision 'v9-missing' not found in bad-submissions/revision-does-not-exist: check the branch",
        revision="v9-missing",
    ),
    "gated-repo": BadCase(
        "is gated or private: the platform's Hub token (GUANACO_HF_TOKEN) has no access", access="gated"
    ),
    "private-repo": BadCase(
        "not found on the Hub (or it is private and the platform has no access)", access="private"
    ),
    "pickle-only-weights": BadCase(
        "only pickle checkpoints found (pytorch_model.bin): loading them can run arbitrary code",
        break_model=_pickle_only,
    ),
    "custom-code": BadCase(
        "the model needs trust_remote_code (config has 'auto_map')",
        break_model=lambda folder: edit_config(folder, auto_map={"AutoModelForCausalLM": "modeling_x.X"}),
    ),
    "architecture-vllm-does-not-serve": BadCase(
        "architecture 'TotallyNewForCausalLM' is not served by vLLM",
        break_model=lambda folder: edit_config(folder, architectures=["TotallyNewForCausalLM"]),
    ),
    "over-the-parameter-limit": BadCase(
        "parameters, over the 1,000 limit: submit a smaller one", settings={"max_parameters": 1000}
    ),
    "over-the-size-limit": BadCase(
        "B limit: submit a smaller or quantized model", settings={"max_weight_bytes": 1000}
    ),
    "truncated-safetensors": BadCase(
        "model.safetensors is truncated or corrupt", break_model=_truncate_weights
    ),
    "corrupt-safetensors-header": BadCase(
        "model.safetensors has a corrupt safetensors header: re-upload it", break_model=_corrupt_header
    ),
    "missing-tokenizer": BadCase("no tokenizer files found", break_model=_remove_tokenizer),
    "unloadable-tokenizer": BadCase(
        "the tokenizer does not load",
        break_model=lambda folder: (folder / "tokenizer.json").write_text("{not json"),
    ),
    "non-finite-weights": BadCase(
        "model.safetensors holds NaN or Inf values in tensor 'model.norm.weight'", break_model=_poison_weights
    ),
    "header-shapes-lie": BadCase(
        "model.safetensors is corrupt: tensor 'model.layers.0.input_layernorm.weight' is declared F32",
        break_model=_lie_in_header,
    ),
    "pooling-model": BadCase(
        "architecture 'BertModel' is an embedding (pooling) model in vLLM, not a text-generation one",
        break_model=lambda folder: edit_config(folder, architectures=["BertModel"]),
    ),
    "missing-config": BadCase(
        "config.json is missing from the repository", break_model=lambda f: (f / "config.json").unlink()
    ),
}


def _publish_case(name: str, case: BadCase, hub_server, tiny_model_dir: Path, tmp_path: Path) -> str:
    repo = f"bad-submissions/{name}"
    if not case.publish:
        return repo
    folder = model_variant(tiny_model_dir, tmp_path, name)
    if case.break_model is not None:
        case.break_model(folder)
    hub_server.publish(repo, folder)
    if case.access != "public":
        hub_server.restrict(repo, tokens=["hf_someone_elses_token"], gated=case.access == "gated")
    return repo


@pytest.mark.parametrize("name", list(CASES))
def test_bad_submission_fails_with_an_actionable_reason_and_leaves_nothing_behind(
    name, hub_server, s3_server, tiny_model_dir, tmp_path
):
    case = CASES[name]
    repo = _publish_case(name, case, hub_server, tiny_model_dir, tmp_path)
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server, **(case.settings or {}))
    submission_id = pipeline.submit(repo, case.revision)
    objects_before = model_object_keys(s3_server)

    result = pipeline.run(submission_id)

    assert not result.success
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.FAILED
    assert outcome.failure_reason.startswith("downloading: ")
    assert case.expected_reason in outcome.failure_reason
    assert outcome.events[-1] == f"failed: {outcome.failure_reason}"
    # Nothing left behind: no cache object, no multipart upload, no server, no staging folder at all.
    assert model_object_keys(s3_server) == objects_before
    uploads = s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket, Prefix="models/")
    assert uploads.get("Uploads", []) == []
    assert pipeline.recorded_servers() == []
    assert not (pipeline.settings.work_dir / submission_id).exists()
    # The server prestarted when the download began (its log stays) was stopped with the rest.
    assert pipeline.deployer().log_path(submission_id).exists()
    assert processes_mentioning(str(pipeline.deployer().work_path(submission_id))) == []
    # The Dagster UI shows the failed run of this partition, with the same words on the failed step.
    (run_id,) = pipeline.failed_runs(submission_id)
    failures = pipeline.step_failures(run_id)
    assert list(failures) == ["raw_weights"]
    assert case.expected_reason in failures["raw_weights"]
    if name == "pickle-only-weights":
        assert not (tmp_path / "unpickled").exists()


# ---------------------------------------------------------------------------------------------------------
# Bad requests never reach Dagster: the service refuses them
# ---------------------------------------------------------------------------------------------------------

BAD_REQUESTS: dict[str, tuple[dict[str, Any], str]] = {
    "memory-template-without-memory": (
        {"formatter": {"memory_template": "{bot_name} remembers nothing"}},
        "memory_template must contain {memory}",
    ),
    "prompt-template-without-prompt": (
        {"formatter": {"prompt_template": "<START>\n"}},
        "prompt_template must contain {prompt}",
    ),
    "bot-template-without-message": (
        {"formatter": {"bot_template": "{bot_name}:\n"}},
        "bot_template must contain {message}",
    ),
    "template-with-unknown-placeholder": (
        {"formatter": {"user_template": "{user_name}: {message} {secret}\n"}},
        "user_template may not use {secret}",
    ),
    "template-with-format-spec": (
        {"formatter": {"bot_template": "{message!r}"}},
        "may not carry a format spec or conversion",
    ),
    "temperature-above-2": ({"generation_params": {"temperature": 2.5}}, "less than or equal to 2"),
    "top-p-zero": ({"generation_params": {"top_p": 0}}, "greater than 0"),
    "top-k-zero": ({"generation_params": {"top_k": 0}}, "top_k must be -1 (disabled) or between 1 and 1000"),
    "max-output-tokens-zero": ({"generation_params": {"max_output_tokens": 0}}, "greater than or equal to 1"),
    "max-input-tokens-too-large": (
        {"generation_params": {"max_input_tokens": 10**6}},
        "less than or equal to 32768",
    ),
    "best-of-too-large": ({"generation_params": {"best_of": 64}}, "less than or equal to 16"),
    "unknown-generation-param": ({"generation_params": {"beam_width": 4}}, "Extra inputs are not permitted"),
}


@pytest.mark.postgres
@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_formatter_or_generation_params_are_refused_with_422_before_reaching_dagster(service, name):
    fields, expected = BAD_REQUESTS[name]
    with service.store.session() as session:
        before = session.scalar(select(func.count()).select_from(Submission))
    response = service.client(service.alice_key).post(
        "/models/submit", json={"model_repo": "alice/bad-request", **fields}
    )
    assert response.status_code == 422
    messages = [error["msg"] for error in response.json()["detail"]]
    assert any(expected in message for message in messages), messages
    with service.store.session() as session:
        # No row means no partition and no run: the submission sensor only sees stored submissions.
        assert session.scalar(select(func.count()).select_from(Submission)) == before


# ---------------------------------------------------------------------------------------------------------
# The same model again: the cache is reused
# ---------------------------------------------------------------------------------------------------------


def _materialization_metadata(result: ExecuteInProcessResult, asset_name: str) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node(asset_name)
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.mark.vllm
def test_resubmitting_the_same_model_reuses_the_cached_artifact_and_deploys(
    hub_server, s3_server, tiny_model_dir, tmp_path
):
    folder = model_variant(tiny_model_dir, tmp_path, "resubmitted")
    # A config no earlier test uploaded, so the first submission's upload is a real one.
    edit_config(folder, guanaco_test_nonce=uuid.uuid4().hex)
    repo = "bad-submissions/resubmitted"
    hub_server.publish(repo, folder)
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    first, second = pipeline.submit(repo), pipeline.submit(repo, developer="grace")
    uploaded = pipeline.run(first, selection=PIPELINE_ASSETS[:3])  # up to the S3 cache
    assert uploaded.success
    try:
        deployed = pipeline.run(second)
        outcome = pipeline.outcome(second)
        assert deployed.success, outcome.failure_reason
        assert outcome.status == Status.DEPLOYED
    finally:
        pipeline.deployer().teardown_all()

    first_upload = _materialization_metadata(uploaded, "cached_s3_object")
    reupload = _materialization_metadata(deployed, "cached_s3_object")
    assert first_upload["reused_cached_artifact"] is False and first_upload["uploaded_bytes"] > 0
    assert reupload["reused_cached_artifact"] is True and reupload["uploaded_bytes"] == 0
    assert reupload["uri"] == first_upload["uri"]
    with pipeline.store.session() as session:
        assert get_submission(session, second).artifact_uri == first_upload["uri"]
    assert pipeline.recorded_servers() == []
