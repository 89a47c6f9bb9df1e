"""KubernetesDeployer against a real kube-apiserver: create, read, watch, replace and delete for real.

Runs only when GUANACO_TEST_KUBECONFIG names the kubeconfig of a disposable API server with no scheduler,
controller-manager or kubelet (FIELD-NOTES, "Kubernetes": kube-apiserver built from Debian's source package
plus etcd, on loopback). The test plays those parts itself: it registers a Node with `nvidia.com/gpu`
capacity, creates the Deployment's pod as the ReplicaSet controller would, writes the pod status a kubelet
(or the scheduler's verdict) would write, and finishes foreground deletions as the garbage collector would.
Everything the deployer sends and reads goes through the real server: names, labels and manifests are
validated there (422), duplicates answer 409, watches stream real events. With controllers and a kubelet (a
real node: `make test-cluster`, tests/cluster/) these stand-ins would race the real ones, so that tier runs
its own tests, in which a pod really starts.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

KUBECONFIG = os.environ.get("GUANACO_TEST_KUBECONFIG")
pytestmark = pytest.mark.skipif(
    not KUBECONFIG,
    reason="no API server: set GUANACO_TEST_KUBECONFIG to the kubeconfig of a disposable kube-apiserver "
    "(FIELD-NOTES 'Kubernetes' shows how to build and run one here) to run the deployer against it; "
    "tests/integration/test_kubernetes_deployer.py covers the same logic offline",
)

if KUBECONFIG:
    import kubernetes
    from kubernetes.client import AppsV1Api, CoreV1Api
    from kubernetes.client.exceptions import ApiException

    from guanaco_dagster.deployment.base import DeploymentError, DeploymentSpec
    from guanaco_dagster.deployment.kubernetes import KubernetesDeployer
    from guanaco_dagster.deployment.kubernetes_config import KubernetesSettings
    from guanaco_dagster.deployment.kubernetes_manifests import (
        SPEC_HASH_LABEL,
        SUBMISSION_LABEL,
        resource_name,
    )

# The client sends a dict PATCH body as a JSON patch unless told otherwise.
MERGE = "application/merge-patch+json"
NODE_NAME = "guanaco-it-gpu-node"
NODE_GPUS = 8
SUBMISSION_ID = "Org/Llama-3.1-8B-Instruct_v12-ünïcødé-" + "x" * 80


@pytest.fixture(scope="module")
def core() -> Any:
    return CoreV1Api(kubernetes.config.new_client_from_config(config_file=KUBECONFIG))


@pytest.fixture(scope="module")
def apps() -> Any:
    return AppsV1Api(kubernetes.config.new_client_from_config(config_file=KUBECONFIG))


@pytest.fixture(scope="module")
def gpu_node(core: Any) -> str:
    """A Node advertising GPUs, as a device plugin would make a kubelet report it."""
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": str(NODE_GPUS)}
    body = {
        "metadata": {"name": NODE_NAME, "labels": {"nvidia.com/gpu.present": "true"}},
        "status": {"capacity": capacity, "allocatable": capacity},
    }
    try:
        core.create_node(body)
    except ApiException as error:
        if error.status != 409:
            raise
    core.patch_node_status(
        NODE_NAME, {"status": {"capacity": capacity, "allocatable": capacity}}, _content_type=MERGE
    )
    yield NODE_NAME
    core.delete_node(NODE_NAME)


@pytest.fixture
def namespace(core: Any) -> Iterator[str]:
    name = f"guanaco-it-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    # The ServiceAccount admission plugin wants it, and no controller-manager is there to create it.
    core.create_namespaced_service_account(name, {"metadata": {"name": "default"}})
    yield name
    # Without a namespace controller the namespace stays Terminating; it holds nothing by then.
    core.delete_namespace(name)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class ClusterParts:
    """Plays the ReplicaSet controller, the scheduler and the kubelet for the deployer's Deployments."""

    def __init__(self, core: Any, apps: Any, namespace: str, node: str, schedulable: bool) -> None:
        self.core, self.apps, self.namespace, self.node = core, apps, namespace, node
        self.schedulable = schedulable
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClusterParts:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)

    def _run(self) -> None:
        watch = kubernetes.watch.Watch()
        while not self.stop.is_set():
            for event in watch.stream(
                self.apps.list_namespaced_deployment, self.namespace, timeout_seconds=2
            ):
                deployment = event["object"]
                if event["type"] in ("ADDED", "MODIFIED") and deployment.metadata.deletion_timestamp is None:
                    self._ensure_pod(deployment)
                if self.stop.is_set():
                    watch.stop()
                    break

    def _ensure_pod(self, deployment: Any) -> None:
        labels = deployment.spec.template.metadata.labels
        selector = (
            f"{SUBMISSION_LABEL}={labels[SUBMISSION_LABEL]},{SPEC_HASH_LABEL}={labels[SPEC_HASH_LABEL]}"
        )
        if self.core.list_namespaced_pod(self.namespace, label_selector=selector).items:
            return
        for old in self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{SUBMISSION_LABEL}={labels[SUBMISSION_LABEL]}"
        ).items:
            self.core.delete_namespaced_pod(old.metadata.name, self.namespace, grace_period_seconds=0)
        template = self.apps.api_client.sanitize_for_serialization(deployment.spec.template)
        name = f"{deployment.metadata.name[:40]}-{labels[SPEC_HASH_LABEL]}-{uuid.uuid4().hex[:5]}"
        pod_spec = {**template["spec"], **({"nodeName": self.node} if self.schedulable else {})}
        pod = self.core.create_namespaced_pod(
            self.namespace, {"metadata": {"name": name, "labels": labels}, "spec": pod_spec}
        )
        if self.schedulable:
            self._kubelet_reports_ready(pod, deployment)
        else:
            self._scheduler_reports_no_gpus(pod, deployment)

    def _kubelet_reports_ready(self, pod: Any, deployment: Any) -> None:
        # The Deployment's status first, so `get` agrees as soon as the deployer sees the pod Ready.
        replicas = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
        self.apps.patch_namespaced_deployment_status(
            deployment.metadata.name,
            self.namespace,
            {"status": {"observedGeneration": deployment.metadata.generation, **replicas}},
            _content_type=MERGE,
        )
        container = pod.spec.containers[0]
        status = {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()},
                {"type": "Ready", "status": "True", "lastTransitionTime": _now()},
            ],
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image,
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": _now()}},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(
            pod.metadata.name, self.namespace, {"status": status}, _content_type=MERGE
        )

    def _scheduler_reports_no_gpus(self, pod: Any, deployment: Any) -> None:
        message = f"0/1 nodes are available: 1 Insufficient nvidia.com/gpu. (asked for more than {NODE_GPUS})"
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        self.core.patch_namespaced_pod_status(
            pod.metadata.name,
            self.namespace,
            {"status": {"phase": "Pending", "conditions": [condition]}},
            _content_type=MERGE,
        )
        self.core.create_namespaced_event(
            self.namespace,
            {
                "metadata": {"name": f"{pod.metadata.name}.{uuid.uuid4().hex[:8]}"},
                "involvedObject": {
                    "kind": "Pod",
                    "name": pod.metadata.name,
                    "namespace": self.namespace,
                    "uid": pod.metadata.uid,
                },
                "reason": "FailedScheduling",
                "message": message,
                "type": "Warning",
                "count": 1,
                "firstTimestamp": _now(),
                "lastTimestamp": _now(),
                "source": {"component": "default-scheduler"},
            },
        )


def finish_foreground_deletions(core: Any, apps: Any, namespace: str) -> None:
    """What the garbage collector does for foreground deletion: remove dependents, then the finalizer."""
    for pod in core.list_namespaced_pod(namespace).items:
        core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
    for items, patch in (
        (apps.list_namespaced_deployment(namespace).items, apps.patch_namespaced_deployment),
        (core.list_namespaced_service(namespace).items, core.patch_namespaced_service),
    ):
        for item in items:
            if item.metadata.deletion_timestamp is not None:
                patch(item.metadata.name, namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE)


def make_deployer(namespace: str, **overrides: Any) -> KubernetesDeployer:
    settings = KubernetesSettings(
        namespace=namespace,
        kubeconfig=KUBECONFIG,
        in_cluster=False,
        image="registry.invalid/guanaco-inference:integration",
        **{"startup_deadline_s": 30, **overrides},
    )
    return KubernetesDeployer(settings)


def test_deploy_get_redeploy_and_teardown_against_a_real_api_server(core, apps, gpu_node, namespace) -> None:
    deployer = make_deployer(namespace)
    spec = DeploymentSpec(SUBMISSION_ID, "s3://guanaco-models/models/" + "a" * 64 + "/", SUBMISSION_ID)
    name = resource_name(SUBMISSION_ID)
    with ClusterParts(core, apps, namespace, gpu_node, schedulable=True):
        deployment = deployer.deploy(spec)
        assert deployment.endpoint_url == f"http://{name}.{namespace}.svc.cluster.local:8000/v1"
        assert (
            apps.read_namespaced_deployment(name, namespace).metadata.annotations["guanaco/submission-id"]
            == SUBMISSION_ID
        )
        assert core.read_namespaced_service(name, namespace).spec.cluster_ip
        assert deployer.get(SUBMISSION_ID) is not None
        assert deployer.list_submission_ids() == [SUBMISSION_ID]

        # Same submission, new artifact: the objects exist (409), so they are replaced, not duplicated.
        moved = DeploymentSpec(SUBMISSION_ID, "s3://guanaco-models/models/" + "b" * 64 + "/", SUBMISSION_ID)
        deployer.deploy(moved)
        annotations = apps.read_namespaced_deployment(name, namespace).metadata.annotations
        assert annotations["guanaco/artifact-uri"] == moved.artifact_uri
        assert len(apps.list_namespaced_deployment(namespace).items) == 1

    assert deployer.teardown(SUBMISSION_ID) is True
    finish_foreground_deletions(core, apps, namespace)
    for read in (apps.read_namespaced_deployment, core.read_namespaced_service):
        with pytest.raises(ApiException) as gone:
            read(name, namespace)
        assert gone.value.status == 404
    assert deployer.teardown(SUBMISSION_ID) is False


def test_a_pod_that_cannot_get_its_gpus_fails_the_deploy_with_the_reason_and_leaves_nothing(
    core, apps, gpu_node, namespace
) -> None:
    deployer = make_deployer(namespace, gpu_count=NODE_GPUS * 2, startup_deadline_s=3)
    spec = DeploymentSpec("org-model_v1", "s3://guanaco-models/models/" + "c" * 64 + "/", "org-model_v1")
    with (
        ClusterParts(core, apps, namespace, gpu_node, schedulable=False),
        pytest.raises(DeploymentError) as failure,
    ):
        deployer.deploy(spec)
    first_line = str(failure.value).splitlines()[0]
    assert "Insufficient nvidia.com/gpu" in first_line and "GUANACO_K8S_GPU_COUNT" in first_line
    assert "FailedScheduling" in str(failure.value)
    finish_foreground_deletions(core, apps, namespace)
    assert apps.list_namespaced_deployment(namespace).items == []
    assert core.list_namespaced_service(namespace).items == []
