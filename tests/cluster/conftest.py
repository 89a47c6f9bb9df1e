"""The cluster tier runs only inside `make test-cluster`
(deploy/local/cluster.sh sets GUANACO_TEST_CLUSTER_DIR).

The pods of this tier share the host's network: see host_network_webhook.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.containers.engine import INFERENCE_IMAGE, engine_problem, image_problem

CLUSTER_DIR = os.environ.get("GUANACO_TEST_CLUSTER_DIR")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's tests unless a one-node cluster is up, the engine runs and the image is built."""
    here = os.path.dirname(__file__)
    ours = [item for item in items if str(item.fspath).startswith(here)]
    if not ours:
        return
    if not CLUSTER_DIR:
        reason = (
            "cluster tier: run `make test-cluster` (deploy/local/cluster.sh sets GUANACO_TEST_CLUSTER_DIR)"
        )
    else:
        reason = engine_problem() or image_problem(INFERENCE_IMAGE)
    if reason:
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def cluster_dir() -> Path:
    """The running cluster's state folder: admin.kubeconfig, pki/."""
    return Path(CLUSTER_DIR or "")


@pytest.fixture(scope="session")
def kubeconfig(cluster_dir: Path) -> str:
    return str(cluster_dir / "admin.kubeconfig")


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> Any:
    import kubernetes

    return kubernetes.config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="session")
def host_network_for_model_servers(api_client: Any, cluster_dir: Path) -> Iterator[None]:
    """Model-server pods on the host's network (the cluster has no pod network: host_network_webhook)."""
    from kubernetes.client import AdmissionregistrationV1Api

    from guanaco_dagster.ports import free_port
    from tests.cluster.host_network_webhook import HostNetworkWebhook

    with HostNetworkWebhook(AdmissionregistrationV1Api(api_client), cluster_dir / "pki", free_port()):
        yield


@pytest.fixture
def namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace, deleted with everything in it afterwards (the namespace controller runs here)."""
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(api_client)
    name = f"guanaco-cluster-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)
