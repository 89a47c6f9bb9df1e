"""The inference image serves a Guanaco artifact from S3: through openai and the platform's chat path.

SeaweedFS runs on the host (loopback); the container shares the host's network, downloads the artifact's
config from S3 and streams the weights with tensorizer, exactly as a model-server pod on Kubernetes does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from guanaco_dagster.beta.model_client import ModelClient
from guanaco_dagster.ports import free_port
from tests.containers.engine import INFERENCE_IMAGE, Container, run_detached
from tests.fixtures.s3 import S3Info
from tests.fixtures.vllm import SERVED_MODEL_NAME

# Generous: vLLM starts in ~40 s on an idle 2-core machine, but took 9 min while 8 engineers shared it.
STARTUP_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class ServingContainer:
    container: Container
    endpoint_url: str
    startup_s: float


def wait_for_health(container: Container, base_url: str, timeout_s: float) -> None:
    """Until /health answers 200; fail with the container's log when it exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not container.running():
            pytest.fail(
                f"the inference container exited with {container.exit_code()}:\n{container.logs()[-4000:]}"
            )
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(
        f"the inference container was not healthy after {timeout_s:.0f} s:\n{container.logs()[-4000:]}"
    )


@pytest.fixture(scope="module")
def serving_container(s3_server: S3Info, tiny_artifact_uri: str) -> Iterator[ServingContainer]:
    """The inference image serving the tiny Llama from the test S3 server, as `docker run` users start it."""
    port = free_port()
    started = time.monotonic()
    container = run_detached(
        INFERENCE_IMAGE,
        [
            "--artifact-uri",
            tiny_artifact_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            SERVED_MODEL_NAME,
            "--max-model-len",
            "512",
        ],
        env={
            "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3_server.access_key,
            "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
            "AWS_DEFAULT_REGION": s3_server.region,
        },
        # vLLM wants more shared memory than Docker's default 64 MB (Kubernetes pods get an emptyDir).
        docker_options=["--shm-size", "1g"],
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_for_health(container, base_url, STARTUP_TIMEOUT_S)
        yield ServingContainer(container, f"{base_url}/v1", round(time.monotonic() - started, 1))
    finally:
        container.stop()
        container.remove()


def test_the_image_answers_completions_through_the_openai_package(
    serving_container: ServingContainer,
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=serving_container.endpoint_url, api_key="unused", max_retries=0, timeout=120)
    completion = client.completions.create(
        model=SERVED_MODEL_NAME, prompt="The quick brown fox", max_tokens=16, temperature=0
    )

    assert completion.usage.completion_tokens >= 1
    assert completion.choices[0].finish_reason in ("length", "stop")
    assert [model.id for model in client.models.list()] == [SERVED_MODEL_NAME]


def test_the_image_answers_a_beta_chat_through_the_platforms_model_client(
    serving_container: ServingContainer,
) -> None:
    client = ModelClient(serving_container.endpoint_url, SERVED_MODEL_NAME)
    reply = client.chat(
        [{"role": "user", "content": "Hello! How are you today?"}], max_tokens=12, temperature=0
    )

    assert reply.completion_tokens >= 1
    assert reply.finish_reason in ("length", "stop")
    assert client.count_tokens("Hello there") >= 1


def test_sigterm_stops_the_container_within_the_kubelets_grace_period(
    serving_container: ServingContainer,
) -> None:
    # Last in this module: it stops the module's container (the fixture's own stop then has nothing to do).
    started = time.monotonic()
    serving_container.container.stop(grace_s=30)
    stopped_s = time.monotonic() - started

    assert serving_container.container.exit_code() == 0, serving_container.container.logs()[-2000:]
    assert stopped_s < 25, f"took {stopped_s:.1f} s to stop"


def test_the_image_carries_vllms_model_info_cache_for_the_common_families():
    # Filled at build time, so no pod's first start inspects these model classes (inference/Dockerfile).
    from inference.model_info_cache import DEFAULT_ARCHITECTURES
    from tests.containers.engine import docker

    listing = docker(
        "run",
        "--rm",
        "--network",
        "host",
        "--entrypoint",
        "sh",
        INFERENCE_IMAGE,
        "-c",
        'ls "$VLLM_CACHE_ROOT/modelinfos"',
    )

    assert listing.returncode == 0, listing.stderr
    cached = listing.stdout.split()
    for architecture in DEFAULT_ARCHITECTURES:
        assert any(name.endswith(f"-{architecture}.json") for name in cached), (architecture, cached)
