"""The rules behind a resilient platform: core spreading, beta-token keeping, restart backoff, and what a
model server's environment may hold."""

from __future__ import annotations

import stat
from pathlib import Path

from guanaco_dagster.deployment.cpu_sets import choose_cores, omp_threads_bind
from guanaco_dagster.deployment.local_process import LocalProcessDeployer
from guanaco_dagster.embedded.beta_token import load_or_create_beta_token
from guanaco_dagster.embedded.supervisor import backoff_s, describe_exit


def test_servers_are_spread_round_robin_over_the_cores():
    first = choose_cores([0, 1], [], per_server=1)
    second = choose_cores([0, 1], [first], per_server=1)
    third = choose_cores([0, 1], [first, second], per_server=1)

    assert (first, second, third) == ([0], [1], [0])


def test_a_server_wanting_more_cores_than_exist_gets_them_all():
    assert choose_cores([2, 3], [[2]], per_server=4) == [2, 3]
    assert choose_cores([0, 1, 2, 3], [[0, 1]], per_server=2) == [2, 3]
    assert omp_threads_bind([2, 3]) == "2,3"


def test_the_beta_token_is_kept_owner_only_and_reused(tmp_path: Path):
    path = tmp_path / "beta-service-token"

    token = load_or_create_beta_token(path)

    assert load_or_create_beta_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rotating_replaces_the_saved_token_and_a_configured_token_wins(tmp_path: Path):
    path = tmp_path / "beta-service-token"
    old = load_or_create_beta_token(path)

    rotated = load_or_create_beta_token(path, rotate=True)

    assert rotated != old and load_or_create_beta_token(path) == rotated
    assert load_or_create_beta_token(path, configured="from-the-operator") == "from-the-operator"
    assert path.read_text() == "from-the-operator"


def test_restarts_back_off_exponentially_up_to_a_ceiling():
    assert [backoff_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert describe_exit(-9) == "code -9 (SIGKILL)" and describe_exit(1) == "code 1"


def _deployer(tmp_path: Path, **options: object) -> LocalProcessDeployer:
    return LocalProcessDeployer(tmp_path, "http://127.0.0.1:9", "writer", "write-secret", **options)


def test_a_model_server_gets_read_credentials_when_the_operator_configures_them(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GUANACO_BETA_SERVICE_TOKEN", "beta")
    monkeypatch.setenv("GUANACO_DATABASE_URL", "postgresql://store")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "someone-elses")
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    deployer = _deployer(tmp_path, s3_read_access_key="reader", s3_read_secret_key="read-secret")

    env = deployer.server_environment([1])

    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("reader", "read-secret")
    assert not [name for name in env if name.startswith("GUANACO_")]
    assert "write-secret" not in env.values() and "someone-elses" not in env.values()
    assert env["VLLM_LOGGING_LEVEL"] == "DEBUG" and env["VLLM_CPU_OMP_THREADS_BIND"] == "1"


def test_without_read_credentials_a_model_server_reads_with_the_cache_keys(tmp_path: Path):
    env = _deployer(tmp_path, cores_per_server=None).server_environment()

    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("writer", "write-secret")
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env
