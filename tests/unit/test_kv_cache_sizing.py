"""Local model servers: KV cache sized from the model's context length and the stress concurrency (not a
flat GiB), the `uni` executor, and vLLM's cache kept under the platform home."""

from __future__ import annotations

from pathlib import Path

import pytest

from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.deployment.local_process import LocalProcessDeployer
from inference.serve import build_vllm_command, build_vllm_env, kv_cache_bytes, parse_args

# The sample model's shape (guanaco_dagster/testing/sample_model.py).
TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
}


def _deployer(tmp_path: Path, **options: object) -> LocalProcessDeployer:
    return LocalProcessDeployer(tmp_path / "servers", "http://127.0.0.1:9", "key", "secret", **options)


def _options(command: list[str]) -> dict[str, str]:
    return {arg: value for arg, value in zip(command, command[1:], strict=False) if arg.startswith("--")}


def test_kv_cache_bytes_are_keys_and_values_of_every_layer_for_whole_blocks() -> None:
    # 2 (K and V) x 2 layers x 1 KV head x 32 (64 / 2 heads) x 4 bytes = 512 bytes per token.
    assert kv_cache_bytes(TINY_LLAMA, 16384, "float32") == 16384 * 512
    assert kv_cache_bytes(TINY_LLAMA, 16384, "bfloat16") == 16384 * 256
    assert kv_cache_bytes(TINY_LLAMA, 100, "float32") == 128 * 512  # one whole 128-token block


def test_kv_cache_bytes_follow_the_text_config_and_give_up_on_configs_that_do_not_say() -> None:
    assert kv_cache_bytes({"text_config": {**TINY_LLAMA, "dtype": "bfloat16"}}, 128, "auto") == 128 * 256
    assert kv_cache_bytes({"architectures": ["Exotic"], "hidden_size": 64}, 128, "float32") is None


def test_the_sample_model_gets_megabytes_of_kv_cache_for_the_stress_concurrency_not_a_gib(
    tmp_path: Path,
) -> None:
    deployer = _deployer(tmp_path, kv_cache_sequences=8)
    spec = DeploymentSpec("sub", "s3://bucket/models/abc/", "sub", max_model_len=2048)

    options = _options(deployer.serve_command(spec, 8000))

    assert options["--kv-cache-tokens"] == str(8 * 2048)
    assert "--kv-cache-gib" not in options
    assert kv_cache_bytes(TINY_LLAMA, int(options["--kv-cache-tokens"]), "float32") == 8 * 1024**2


def test_a_model_with_a_longer_context_gets_more_cache(tmp_path: Path) -> None:
    deployer = _deployer(tmp_path, max_model_len=8192, kv_cache_sequences=4)
    short = DeploymentSpec("short", "s3://bucket/models/a/", "short", max_model_len=1024)
    long = DeploymentSpec("long", "s3://bucket/models/b/", "long", max_model_len=4096)

    tokens = {spec.submission_id: deployer.kv_cache_tokens(spec) for spec in (short, long)}

    assert tokens == {"short": 4 * 1024, "long": 4 * 4096}
    long_config = {**TINY_LLAMA, "max_position_embeddings": 4096}
    assert kv_cache_bytes(long_config, tokens["long"], "float32") == 4 * kv_cache_bytes(
        TINY_LLAMA, tokens["short"], "float32"
    )


def test_a_configured_size_wins_over_the_computed_one(tmp_path: Path) -> None:
    deployer = _deployer(tmp_path, kv_cache_gib=2)

    options = _options(deployer.serve_command(DeploymentSpec("sub", "s3://b/models/a/", "sub"), 8000))

    assert options["--kv-cache-gib"] == "2"
    assert "--kv-cache-tokens" not in options


def test_local_servers_use_the_uni_executor_and_a_vllm_cache_under_the_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_CACHE_ROOT", raising=False)
    deployer = _deployer(tmp_path)

    command = deployer.serve_command(DeploymentSpec("sub", "s3://b/models/a/", "sub"), 8000)
    env = deployer.server_environment([0])

    assert "--uni-executor" in command
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "servers" / "vllm-cache")


def test_an_operators_vllm_cache_root_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_CACHE_ROOT", "/srv/vllm-cache")

    assert _deployer(tmp_path).server_environment([0])["VLLM_CACHE_ROOT"] == "/srv/vllm-cache"


def test_the_server_turns_tokens_into_an_exact_cache_size_that_the_environment_cannot_override() -> None:
    args = parse_args(
        ["--artifact-uri", "s3://b/models/a/", "--served-model-name", "m", "--kv-cache-tokens", "9"]
    )
    command = build_vllm_command(
        Path("/cfg"),
        "s3://b/models/a/model.tensors",
        "127.0.0.1",
        8000,
        "m",
        kv_cache_bytes=65536,
        uni_executor=True,
    )
    env = build_vllm_env({"VLLM_CPU_KVCACHE_SPACE": "1"}, kv_cache_gib=None, uni_executor=True)

    assert args.kv_cache_tokens == 9
    assert _options(command)["--kv-cache-memory-bytes"] == "65536"
    assert _options(command)["--distributed-executor-backend"] == "uni"
    # vLLM's CPU platform lets VLLM_CPU_KVCACHE_SPACE override the flag, and turns `uni` back into `mp`
    # unless multiprocessing is off.
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_the_uni_executor_binds_the_model_threads_to_the_chosen_cores_as_the_worker_process_was() -> None:
    bound = build_vllm_env({"VLLM_CPU_OMP_THREADS_BIND": "1"}, kv_cache_gib=None, uni_executor=True)
    ranged = build_vllm_env({"VLLM_CPU_OMP_THREADS_BIND": "0-2,5"}, kv_cache_gib=None, uni_executor=True)
    automatic = build_vllm_env({"VLLM_CPU_OMP_THREADS_BIND": "auto"}, kv_cache_gib=None, uni_executor=True)
    worker = build_vllm_env({"VLLM_CPU_OMP_THREADS_BIND": "1"}, kv_cache_gib=None)

    assert (bound["OMP_NUM_THREADS"], bound["OMP_PLACES"], bound["OMP_PROC_BIND"]) == ("1", "{1}", "true")
    assert (ranged["OMP_NUM_THREADS"], ranged["OMP_PLACES"]) == ("4", "{0,1,2,5}")
    assert "OMP_PLACES" not in automatic and "OMP_PLACES" not in worker


def test_the_platform_sizes_kv_caches_for_its_configured_stress_concurrency(tmp_path: Path) -> None:
    from guanaco_dagster.settings import Settings
    from resources import build_resources

    settings = Settings(home=tmp_path, stress_concurrency=3, vllm_max_model_len=1024)

    deployer = build_resources(settings)["deployer"].get_deployer()

    assert isinstance(deployer, LocalProcessDeployer)
    assert deployer.kv_cache_tokens(DeploymentSpec("sub", "s3://b/models/a/", "sub")) == 3 * 1024
