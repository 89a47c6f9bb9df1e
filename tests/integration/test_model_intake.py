"""Model intake: download at a pinned revision from a real Hub-protocol server, then the sanity checks.

Each bad submission is refused with a reason the developer can act on.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from guanaco_dagster.stages.hub_download import HubDownloadError, download_model
from guanaco_dagster.stages.weight_checks import WeightCheckError, check_model_dir

LIMITS = {"max_parameters": 10_000_000, "max_weight_bytes": 100_000_000}


class _Exploit:
    """A pickle that would create a file when unpickled: proof that refused weights are never loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _variant(tiny_model_dir: Path, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(tiny_model_dir, folder)
    return folder


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _download_and_check(hub_server, repo_id: str, dest: Path, revision: str = "main", **limits):
    result = download_model(repo_id, revision, dest, endpoint=hub_server.endpoint, attempts=1)
    return result, check_model_dir(result.local_dir, **{**LIMITS, **limits})


def test_good_model_downloads_at_the_resolved_commit_and_passes_every_check(hub_server, tmp_path):
    result, report = _download_and_check(hub_server, hub_server.repo_id, tmp_path / "dl")
    assert result.commit_sha == hub_server.main_sha
    assert "model.safetensors" in result.files and "config.json" in result.files
    assert report.architecture == "LlamaForCausalLM"
    assert 100_000 < report.parameter_count < 2_000_000
    assert report.tokenizer_vocab_size <= report.config_vocab_size


def test_a_pinned_sha_downloads_that_exact_commit(hub_server, tiny_model_dir, tmp_path):
    newer = _variant(tiny_model_dir, tmp_path, "newer")
    (newer / "README.md").write_text("newer commit")
    repo = "guanaco-tests/moving-branch"
    old_sha = hub_server.publish(repo, tiny_model_dir)
    hub_server.publish(repo, newer)
    result = download_model(repo, old_sha, tmp_path / "dl", endpoint=hub_server.endpoint)
    assert result.commit_sha == old_sha


def test_missing_repository_is_named_in_the_error(hub_server, tmp_path):
    with pytest.raises(HubDownloadError, match="repository guanaco-tests/nope not found"):
        download_model("guanaco-tests/nope", "main", tmp_path / "dl", endpoint=hub_server.endpoint)


def test_missing_revision_is_named_in_the_error(hub_server, tmp_path):
    with pytest.raises(HubDownloadError, match="revision 'v9' not found in guanaco-tests/tiny-llama"):
        download_model(hub_server.repo_id, "v9", tmp_path / "dl", endpoint=hub_server.endpoint)


def test_private_repository_without_access_explains_the_token(hub_server, tiny_model_dir, tmp_path):
    repo = "guanaco-tests/private"
    hub_server.publish(repo, tiny_model_dir)
    hub_server.restrict(repo, tokens=["hf_right"], gated=True)
    with pytest.raises(HubDownloadError, match="gated or private.*GUANACO_HF_TOKEN"):
        download_model(repo, "main", tmp_path / "dl", endpoint=hub_server.endpoint, token="hf_wrong")
    result = download_model(repo, "main", tmp_path / "ok", endpoint=hub_server.endpoint, token="hf_right")
    assert "model.safetensors" in result.files


def test_pickle_only_weights_are_refused_without_being_downloaded_or_unpickled(
    hub_server, tiny_model_dir, tmp_path
):
    folder = _variant(tiny_model_dir, tmp_path, "pickle")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit(marker)))
    hub_server.publish("guanaco-tests/pickle-only", folder)
    with pytest.raises(WeightCheckError, match=r"pickle checkpoints.*safe_serialization=True"):
        download_model("guanaco-tests/pickle-only", "main", tmp_path / "dl", endpoint=hub_server.endpoint)
    assert not marker.exists()
    assert not (tmp_path / "dl").exists()


def test_pickle_files_beside_safetensors_are_not_downloaded(hub_server, tiny_model_dir, tmp_path):
    folder = _variant(tiny_model_dir, tmp_path, "both")
    (folder / "pytorch_model.bin").write_bytes(b"never fetched")
    (folder / "modeling_evil.py").write_text("raise SystemExit")
    hub_server.publish("guanaco-tests/both-formats", folder)
    result = download_model(
        "guanaco-tests/both-formats", "main", tmp_path / "dl", endpoint=hub_server.endpoint
    )
    assert "pytorch_model.bin" not in result.files and "modeling_evil.py" not in result.files


def test_oversized_weights_are_refused_before_download(hub_server, tmp_path):
    with pytest.raises(WeightCheckError, match=r"KiB, over the 1000 B limit"):
        download_model(
            hub_server.repo_id, "main", tmp_path / "dl", endpoint=hub_server.endpoint, max_weight_bytes=1000
        )
    assert not (tmp_path / "dl").exists()


def _refused_after_download(hub_server, folder: Path, repo: str, tmp_path: Path, **limits) -> str:
    hub_server.publish(repo, folder)
    with pytest.raises(WeightCheckError) as error:
        _download_and_check(hub_server, repo, tmp_path / "dl", **limits)
    return str(error.value)


def test_custom_code_is_refused(hub_server, tiny_model_dir, tmp_path):
    folder = _variant(tiny_model_dir, tmp_path, "remote-code")
    _edit_config(folder, auto_map={"AutoModelForCausalLM": "modeling_x.X"})
    reason = _refused_after_download(hub_server, folder, "guanaco-tests/remote-code", tmp_path)
    assert "trust_remote_code" in reason


def test_architecture_vllm_does_not_serve_is_refused(hub_server, tiny_model_dir, tmp_path):
    folder = _variant(tiny_model_dir, tmp_path, "arch")
    _edit_config(folder, architectures=["TotallyNewForCausalLM"])
    reason = _refused_after_download(hub_server, folder, "guanaco-tests/new-arch", tmp_path)
    assert "'TotallyNewForCausalLM' is not served by vLLM" in reason


def test_too_many_parameters_is_refused(hub_server, tmp_path):
    hub = hub_server
    with pytest.raises(WeightCheckError, match=r"parameters, over the 1,000 limit"):
        _download_and_check(hub, hub.repo_id, tmp_path / "dl", max_parameters=1000)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda data: data[: len(data) - 100], "truncated or corrupt"),
        (lambda data: b"\xff" * 8 + data[8:], "not a valid safetensors file"),
        (lambda data: data[:8] + b"{not json" + data[17:], "corrupt safetensors header"),
    ],
    ids=["truncated", "bad-length", "bad-header"],
)
def test_damaged_safetensors_are_refused(hub_server, tiny_model_dir, tmp_path, damage, expected):
    folder = _variant(tiny_model_dir, tmp_path, "damaged")
    weights = folder / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    reason = _refused_after_download(hub_server, folder, "guanaco-tests/damaged", tmp_path)
    assert expected in reason


def test_missing_tokenizer_is_refused(hub_server, tiny_model_dir, tmp_path):
    folder = _variant(tiny_model_dir, tmp_path, "no-tokenizer")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    reason = _refused_after_download(hub_server, folder, "guanaco-tests/no-tokenizer", tmp_path)
    assert "no tokenizer files" in reason


def test_unloadable_tokenizer_is_refused(hub_server, tiny_model_dir, tmp_path):
    folder = _variant(tiny_model_dir, tmp_path, "bad-tokenizer")
    (folder / "tokenizer.json").write_text("{not json")
    reason = _refused_after_download(hub_server, folder, "guanaco-tests/bad-tokenizer", tmp_path)
    assert "tokenizer does not load" in reason


def test_missing_config_is_refused_before_download(hub_server, tiny_model_dir, tmp_path):
    folder = _variant(tiny_model_dir, tmp_path, "no-config")
    (folder / "config.json").unlink()
    hub_server.publish("guanaco-tests/no-config", folder)
    with pytest.raises(WeightCheckError, match="config.json is missing"):
        download_model("guanaco-tests/no-config", "main", tmp_path / "dl", endpoint=hub_server.endpoint)


def test_transient_hub_errors_are_retried(hub_server, tmp_path):
    hub_server.server.inject_faults(status=503, count=2)
    result = download_model(
        hub_server.repo_id, "main", tmp_path / "dl", endpoint=hub_server.endpoint, attempts=4
    )
    assert result.commit_sha == hub_server.main_sha


def test_persistent_hub_errors_fail_with_a_retry_later_message(hub_server, tmp_path):
    hub_server.server.inject_faults(status=503, count=10)
    try:
        with pytest.raises(HubDownloadError, match="Try again later"):
            download_model(
                hub_server.repo_id, "main", tmp_path / "dl", endpoint=hub_server.endpoint, attempts=2
            )
    finally:
        hub_server.server.inject_faults(status=503, count=0)
