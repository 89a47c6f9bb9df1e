"""Read a model server's trouble from Kubernetes objects: is a pod ready, stuck, and what to do about it.

Pure functions over the client's model objects (V1Pod, ApiException), so the deployer's messages are
testable without a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from guanaco_dagster.deployment.kubernetes_config import KubernetesConfig

# Container states that will not fix themselves: the image cannot be pulled, a referenced Secret or key
# is missing, or the server keeps crashing (inference.serve's artifact errors are deterministic).
FATAL_WAITING_REASONS = frozenset(
    {
        "ImagePullBackOff",
        # imagePullPolicy Never and the image is not on the node: the kubelet never retries a pull.
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
READY, WAITING, FATAL = "ready", "waiting", "fatal"


@dataclass(frozen=True)
class PodVerdict:
    """Where one pod stands: `ready`, `waiting` (with what it waits for) or `fatal` (with why)."""

    state: str
    reason: str


def _container_statuses(pod: Any) -> list[Any]:
    status = pod.status
    return (
        list(status.init_container_statuses or []) + list(status.container_statuses or []) if status else []
    )


def describe_pod_problem(pod: Any) -> str:
    """The most telling thing wrong with a pod that is not ready, in one line."""
    status = pod.status
    if status is None:
        return "no status yet"
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"unschedulable: {condition.message or condition.reason}"
    for container in _container_statuses(pod):
        waiting = container.state.waiting if container.state else None
        terminated = container.last_state.terminated if container.last_state else None
        if waiting and waiting.reason not in ("ContainerCreating", "PodInitializing"):
            text = f"container {container.name} is {waiting.reason}"
            if waiting.message:
                text += f": {waiting.message}"
            if terminated:
                text += (
                    f" (last exit code {terminated.exit_code}"
                    f"{' ' + terminated.reason if terminated.reason else ''}, "
                    f"{container.restart_count} restart(s))"
                )
            return text
        if terminated:
            return (
                f"container {container.name} exited with code {terminated.exit_code} "
                f"({terminated.reason or 'no reason'}), {container.restart_count} restart(s)"
            )
    if status.phase in ("Failed", "Succeeded"):
        return f"pod {status.phase}: {status.reason or ''} {status.message or ''}".strip()
    if status.phase == "Running":
        return "running, but /health has not answered yet (weights still streaming from S3?)"
    return f"phase {status.phase or 'unknown'}"


def assess_pod(pod: Any, fail_fast: bool = True) -> PodVerdict:
    """Is this pod serving, still on its way, or stuck in a state that will not fix itself?"""
    if pod.metadata.deletion_timestamp is not None:
        return PodVerdict(WAITING, "terminating")
    status = pod.status
    if status is None:
        return PodVerdict(WAITING, "no status yet")
    if status.phase == "Running" and any(
        condition.type == "Ready" and condition.status == "True" for condition in status.conditions or []
    ):
        return PodVerdict(READY, "")
    if fail_fast:
        for container in _container_statuses(pod):
            waiting = container.state.waiting if container.state else None
            if waiting and waiting.reason in FATAL_WAITING_REASONS:
                return PodVerdict(FATAL, describe_pod_problem(pod))
    # Failed pods (evicted, node lost) are replaced by the ReplicaSet: keep waiting for the replacement.
    return PodVerdict(WAITING, describe_pod_problem(pod))


def hint_for(problem: str, settings: KubernetesConfig) -> str:
    """What the operator can do about a problem found in pod status, Events or logs ('' if unknown)."""
    gpus = f"{settings.gpu_count} {settings.gpu_resource_name}"
    rules: list[tuple[Callable[[str], bool], str]] = [
        (
            lambda text: f"Insufficient {settings.gpu_resource_name}" in text,
            f"no node has {gpus} free: add GPU nodes, free some (guanaco deactivate <id>), or lower "
            "GUANACO_K8S_GPU_COUNT",
        ),
        (
            lambda text: "Insufficient memory" in text or "Insufficient cpu" in text,
            "no node has the CPU/memory requested: lower GUANACO_K8S_CPU_REQUEST / "
            "GUANACO_K8S_MEMORY_REQUEST or add capacity",
        ),
        (
            lambda text: "node affinity/selector" in text,
            f"no node matches GUANACO_K8S_NODE_SELECTOR={settings.node_selector}: fix the selector or label "
            "the GPU nodes",
        ),
        (
            lambda text: "untolerated taint" in text,
            "the nodes carry taints the pod does not tolerate: add them to GUANACO_K8S_TOLERATIONS",
        ),
        (
            lambda text: any(
                word in text
                for word in ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName")
            ),
            f"the nodes cannot pull GUANACO_K8S_IMAGE={settings.image}: check the name and tag, push it, or "
            "set GUANACO_K8S_IMAGE_PULL_SECRETS for a private registry",
        ),
        (
            lambda text: ("secret" in text.lower() and "not found" in text) or "couldn't find key" in text,
            f"create the Secret {settings.s3_secret_name!r} in namespace {settings.namespace!r} with keys "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (see deploy/k8s/secrets.example.yaml), or set "
            "GUANACO_K8S_S3_SECRET_NAME",
        ),
        (
            lambda text: "serviceaccount" in text and "not found" in text,
            f"create the ServiceAccount {settings.service_account!r} (deploy/k8s/rbac.yaml) or unset "
            "GUANACO_K8S_SERVICE_ACCOUNT",
        ),
        (
            lambda text: "exceeded quota" in text,
            f"the ResourceQuota of namespace {settings.namespace!r} is used up: raise it or deactivate "
            "models",
        ),
        (
            lambda text: "CrashLoopBackOff" in text or "exited with code" in text,
            "the model server crashed at start-up: its last log lines follow",
        ),
        (
            lambda text: "/health has not answered" in text,
            "the server did not finish loading in time: raise GUANACO_K8S_STARTUP_DEADLINE_S for large "
            "models, or check the S3 endpoint's throughput from the GPU nodes",
        ),
    ]
    return next((hint for matches, hint in rules if matches(problem)), "")


def api_error_message(error: ApiException, action: str, settings: KubernetesConfig) -> str:
    """A sentence for an API error while creating or deleting objects, with what to do about it."""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else str(error.body or "")
    try:  # the API server answers with a Status object: its message is the readable part
        detail = str(json.loads(body).get("message") or body)
    except (ValueError, AttributeError):
        detail = body
    if error.status in (401, 403):
        hint = (
            f"the platform's service account may not {action} in namespace {settings.namespace!r}: apply the "
            "guanaco-deployer Role and RoleBinding from deploy/k8s/rbac.yaml"
        )
    elif error.status == 404:
        hint = f"namespace {settings.namespace!r} does not exist: create it or set GUANACO_K8S_NAMESPACE"
    elif error.status == 422:
        hint = "the API server rejected the manifest: check the GUANACO_K8S_* settings named in the message"
    else:
        hint = "the Kubernetes API server failed: retry, or check its health"
    status = f"HTTP {error.status} {error.reason}"
    return f"cannot {action} in namespace {settings.namespace!r}: {status}: {detail.strip()[:500]} — {hint}"
