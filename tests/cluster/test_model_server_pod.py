"""KubernetesDeployer on a real node: a submission's model-server pod runs the inference image,
loads the artifact from S3, becomes Ready through the kubelet's probes, passes the stress check, answers a
beta chat through the Guanaco service, and teardown leaves nothing behind: objects, pods, containers, port.

The deployer is used exactly as a run pod uses it; only the pods' network is the host's
(host_network_webhook).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.deployment.kubernetes import KubernetesDeployer
from guanaco_dagster.deployment.kubernetes_config import KubernetesSettings
from guanaco_dagster.deployment.kubernetes_manifests import SUBMISSION_LABEL, resource_name
from guanaco_dagster.ports import free_port, port_open
from guanaco_dagster.stages.stress import Slo, StressConfig, evaluate_slo, run_stress_test
from tests.containers.engine import INFERENCE_IMAGE, docker
from tests.fixtures.s3 import S3Info
from tests.fixtures.vllm import SERVED_MODEL_NAME

SUBMISSION_ID = "cluster-org/tiny-llama_v1"
# vLLM answers in ~40 s on an idle node; 6-9 min were measured while 8 engineers shared the 2 cores.
STARTUP_DEADLINE_S = 900


def s3_secret(s3: S3Info) -> dict[str, Any]:
    """The Secret the deployer's pods read their S3 keys from (GUANACO_K8S_S3_SECRET_NAME)."""
    return {
        "metadata": {"name": "guanaco-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key},
    }


def cpu_node_settings(namespace: str, kubeconfig: str, s3: S3Info, port: int) -> KubernetesSettings:
    """The deployer's settings for a CPU node with the image built here (`make images`)."""
    return KubernetesSettings(
        namespace=namespace,
        kubeconfig=kubeconfig,
        in_cluster=False,
        image=INFERENCE_IMAGE,
        image_pull_policy="Never",
        gpu_count=0,
        tolerations=[],
        dtype="float32",
        max_model_len=512,
        cpu_request="500m",
        memory_request="1Gi",
        memory_limit="8Gi",
        shm_size="1Gi",
        s3_endpoint=s3.endpoint_url,
        s3_region=s3.region,
        port=port,
        startup_deadline_s=STARTUP_DEADLINE_S,
    )


def test_a_submission_is_served_by_a_pod_stress_tested_chatted_with_and_torn_down(
    api_client, kubeconfig, namespace, host_network_for_model_servers, s3_server, tiny_artifact_uri, service
) -> None:
    from kubernetes.client import AppsV1Api, CoreV1Api
    from kubernetes.client.exceptions import ApiException

    core, apps = CoreV1Api(api_client), AppsV1Api(api_client)
    core.create_namespaced_secret(namespace, s3_secret(s3_server))
    port = free_port()
    deployer = KubernetesDeployer(cpu_node_settings(namespace, kubeconfig, s3_server, port))
    spec = DeploymentSpec(SUBMISSION_ID, tiny_artifact_uri, SERVED_MODEL_NAME, max_model_len=512)

    deployment = deployer.deploy(spec)
    print(f"\ndeploy → Ready in {deployment.startup_s:.1f} s (pod {deployment.details['pod_name']})")

    name = resource_name(SUBMISSION_ID)
    (pod,) = core.list_namespaced_pod(namespace, label_selector=f"{SUBMISSION_LABEL}={name}").items
    # deploy/local/cluster.sh names the node by its address (a kubelet refuses a loopback --node-ip).
    assert pod.spec.node_name == "127.0.0.1" and pod.spec.host_network
    assert pod.status.pod_ip == "127.0.0.1"
    assert [status.ready for status in pod.status.container_statuses] == [True]
    assert deployer.get(SUBMISSION_ID) is not None
    assert deployer.list_submission_ids() == [SUBMISSION_ID]
    # No Service routing here (no kube-proxy, no cluster DNS): reach the pod where the kubelet probed it.
    endpoint = f"http://{pod.status.pod_ip}:{port}/v1"

    report = run_stress_test(
        endpoint,
        SERVED_MODEL_NAME,
        StressConfig(stress_concurrency=4, stress_requests=8, stress_max_tokens=16),
    )
    verdict = evaluate_slo(report, Slo())
    print(
        f"stress: {report.requests} requests, {report.errors} errors, p95 {report.latency_p95_s:.2f} s, "
        f"ttft p95 {report.ttft_p95_s:.2f} s, {report.tokens_per_s:.0f} tok/s"
    )
    assert report.errors == 0, report.error_samples
    assert verdict.passed, verdict.violations

    submission_id = service.deployed_submission(
        service.alice_key, endpoint, SERVED_MODEL_NAME, "cluster/tiny"
    )
    beta = service.beta_client()
    started = beta.post("/beta/conversations", json={"user_id": "cluster-user", "bot_name": "Captain"}).json()
    assert started["submission_id"] == submission_id
    reply = beta.post(
        f"/beta/conversations/{started['conversation_id']}/messages", json={"message": "Hello!"}
    )
    assert reply.status_code == 200, reply.text
    assert isinstance(reply.json()["reply"], str)

    assert deployer.teardown(SUBMISSION_ID) is True
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (
        core.list_namespaced_pod(namespace).items or port_open("127.0.0.1", port)
    ):
        time.sleep(1)
    assert core.list_namespaced_pod(namespace).items == []
    assert not port_open("127.0.0.1", port), "the model server still listens after teardown"
    for read in (apps.read_namespaced_deployment, core.read_namespaced_service):
        with pytest.raises(ApiException) as gone:
            read(name, namespace)
        assert gone.value.status == 404
    containers = docker("ps", "-aq", "--filter", f"label=io.kubernetes.pod.namespace={namespace}").stdout
    assert containers.strip() == "", "the pod's containers are still there"


def test_a_submission_whose_image_is_not_on_the_node_fails_fast_with_the_cause_and_leaves_nothing(
    api_client, kubeconfig, namespace, host_network_for_model_servers, s3_server
) -> None:
    from kubernetes.client import AppsV1Api, CoreV1Api
    from kubernetes.client.exceptions import ApiException

    from guanaco_dagster.deployment.base import DeploymentError

    core, apps = CoreV1Api(api_client), AppsV1Api(api_client)
    core.create_namespaced_secret(namespace, s3_secret(s3_server))
    missing_image = "guanaco-inference:not-built"
    # A deadline well above fail-fast's few seconds: only fail-fast can end the deploy within the bound below.
    settings = cpu_node_settings(namespace, kubeconfig, s3_server, free_port()).model_copy(
        update={"image": missing_image, "startup_deadline_s": 300}
    )
    spec = DeploymentSpec(SUBMISSION_ID, "s3://guanaco-test-models/models/none/", SERVED_MODEL_NAME)

    started = time.monotonic()
    with pytest.raises(DeploymentError) as failure:
        KubernetesDeployer(settings).deploy(spec)
    elapsed = time.monotonic() - started
    headline = str(failure.value).splitlines()[0]
    print(f"\nfailed in {elapsed:.1f} s: {headline}")

    assert elapsed < 120, f"fail-fast did not stop the wait ({elapsed:.0f} s)"
    assert "failed to start" in headline and "ErrImageNeverPull" in headline
    assert f"GUANACO_K8S_IMAGE={missing_image}" in headline

    # The deployer deletes in the foreground: the Deployment goes once its pod has.
    name = resource_name(SUBMISSION_ID)

    def leftovers() -> list[str]:
        found = [f"pod {pod.metadata.name}" for pod in core.list_namespaced_pod(namespace).items]
        for kind, read in (
            ("Deployment", apps.read_namespaced_deployment),
            ("Service", core.read_namespaced_service),
        ):
            try:
                read(name, namespace)
                found.append(f"{kind} {name}")
            except ApiException as error:
                assert error.status == 404, error
        return found

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and leftovers():
        time.sleep(1)
    assert leftovers() == []
