"""Pure builders of the Kubernetes objects that serve one submission: a Deployment and a Service.

No API calls here, so every manifest the deployer can send is testable offline. Names derive from the
submission id alone (stable across runs, so a re-deploy finds and updates the same objects); the raw id,
which may hold anything a model name holds, travels in an annotation.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from typing import Any

from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.deployment.kubernetes_config import KubernetesConfig

NAME_PREFIX = "guanaco-"
NAME_HASH_CHARS = 10
# guanaco- (8) + slug (≤ 42) + - (1) + hash (10) ≤ 61: a DNS-1123 label, and a DNS-1035 one (Services).
NAME_SLUG_CHARS = 42
CONTAINER_NAME = "vllm"
PORT_NAME = "http"
HEALTH_PATH = "/health"
SCRATCH_DIR = "/scratch"
SERVE_COMMAND = ["python3", "-m", "inference.serve"]

SUBMISSION_LABEL = "guanaco/submission"
SPEC_HASH_LABEL = "guanaco/spec-hash"
COMPONENT = "model-server"
SUBMISSION_ID_ANNOTATION = "guanaco/submission-id"
ARTIFACT_URI_ANNOTATION = "guanaco/artifact-uri"
SERVED_MODEL_ANNOTATION = "guanaco/served-model-name"
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by=guanaco,app.kubernetes.io/component={COMPONENT}"

STARTUP_PROBE_PERIOD_S = 10
# vLLM serves Prometheus metrics at its root; Prometheus' usual pod discovery reads these annotations.
METRICS_PATH = "/metrics"


def resource_name(submission_id: str) -> str:
    """The Deployment/Service name of a submission: `guanaco-<slug>-<sha256[:10]>`, DNS-1123, ≤ 63 chars.

    The slug keeps names readable in kubectl; the hash keeps ids that slug alike (case, punctuation,
    unicode, truncation) apart.
    """
    digest = hashlib.sha256(submission_id.encode("utf-8")).hexdigest()[:NAME_HASH_CHARS]
    ascii_id = unicodedata.normalize("NFKD", submission_id).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_id).strip("-")[:NAME_SLUG_CHARS].rstrip("-")
    return f"{NAME_PREFIX}{slug}-{digest}" if slug else f"{NAME_PREFIX}{digest}"


def selector_labels(submission_id: str) -> dict[str, str]:
    """Labels that select the submission's model-server pods (the Deployment's and the Service's)."""
    return {"app.kubernetes.io/component": COMPONENT, SUBMISSION_LABEL: resource_name(submission_id)}


def object_labels(submission_id: str, settings: KubernetesConfig) -> dict[str, str]:
    """Labels of every object of a submission: the operator's, the recommended app.kubernetes.io set, ours."""
    return {
        **settings.labels,
        "app.kubernetes.io/name": "guanaco-model-server",
        "app.kubernetes.io/part-of": "guanaco",
        "app.kubernetes.io/managed-by": "guanaco",
        **selector_labels(submission_id),
    }


def object_annotations(spec: DeploymentSpec) -> dict[str, str]:
    """What the names cannot hold: the raw submission id, the artifact and the served model name."""
    return {
        SUBMISSION_ID_ANNOTATION: spec.submission_id,
        ARTIFACT_URI_ANNOTATION: spec.artifact_uri,
        SERVED_MODEL_ANNOTATION: spec.served_model_name,
    }


def scrape_annotations(settings: KubernetesConfig) -> dict[str, str]:
    """`prometheus.io/*` pod annotations: scrape vLLM's own `/metrics` on the server port."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(settings.port),
        "prometheus.io/path": METRICS_PATH,
    }


def vllm_args(settings: KubernetesConfig) -> list[str]:
    """vLLM arguments beyond inference.serve's own: the operator's, plus tensor parallelism over the GPUs."""
    args = list(settings.vllm_extra_args)
    if settings.gpu_count > 1 and not any(arg.startswith("--tensor-parallel-size") for arg in args):
        args += ["--tensor-parallel-size", str(settings.gpu_count)]
    return args


def served_context_length(spec: DeploymentSpec, settings: KubernetesConfig) -> int:
    """The spec's context length, never above the cluster's limit (a model's own limit may be lower)."""
    if spec.max_model_len is None:
        return settings.max_model_len
    return min(spec.max_model_len, settings.max_model_len)


def serve_args(spec: DeploymentSpec, settings: KubernetesConfig) -> list[str]:
    """Arguments of `python3 -m inference.serve` for `spec`; vLLM's own arguments follow a `--`."""
    args = [
        "--artifact-uri",
        spec.artifact_uri,
        # The pod's IP is what the Service targets; 127.0.0.1 would be unreachable.
        "--host",
        "0.0.0.0",
        "--port",
        str(settings.port),
        "--served-model-name",
        spec.served_model_name,
        "--dtype",
        settings.dtype,
        "--kv-cache-gib",
        str(settings.kv_cache_gib),
        "--max-model-len",
        str(served_context_length(spec, settings)),
        "--work-dir",
        SCRATCH_DIR,
        # Eager mode only pays off on CPU; GPU servers keep vLLM's CUDA graphs.
        "--eager" if settings.gpu_count == 0 else "--no-eager",
    ]
    extra = vllm_args(settings)
    return args + ["--", *extra] if extra else args


def container_env(settings: KubernetesConfig) -> list[dict[str, Any]]:
    """The server's environment: S3 endpoint and region as values, credentials only as Secret references."""
    env: list[dict[str, Any]] = []
    if settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": settings.s3_endpoint})
    if settings.s3_region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": settings.s3_region})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.append(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": settings.s3_secret_name, "key": key}}}
        )
    env += [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "VLLM_NO_USAGE_STATS", "value": "1"}]
    env += [{"name": name, "value": value} for name, value in sorted(settings.extra_env.items())]
    return env


def container_resources(settings: KubernetesConfig) -> dict[str, Any]:
    """Requests and limits; GPUs as a limit (an extended resource's request defaults to its limit)."""
    requests = {"cpu": settings.cpu_request, "memory": settings.memory_request}
    limits: dict[str, Any] = {}
    if settings.cpu_limit:
        limits["cpu"] = settings.cpu_limit
    if settings.memory_limit:
        limits["memory"] = settings.memory_limit
    if settings.gpu_count > 0:
        limits[settings.gpu_resource_name] = str(settings.gpu_count)
    return {"requests": requests, "limits": limits} if limits else {"requests": requests}


def _http_probe(period_s: int, timeout_s: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": HEALTH_PATH, "port": PORT_NAME},
        "periodSeconds": period_s,
        "timeoutSeconds": timeout_s,
        "failureThreshold": failure_threshold,
    }


def probes(settings: KubernetesConfig) -> dict[str, dict[str, Any]]:
    """A startupProbe bounded by the deadline (kubelet restarts a stuck server), then liveness/readiness.

    vLLM's /health answers once the weights are loaded and the engine runs, so readiness means "serving".
    """
    startup_failures = max(1, math.ceil(settings.startup_deadline_s / STARTUP_PROBE_PERIOD_S))
    return {
        "startupProbe": _http_probe(STARTUP_PROBE_PERIOD_S, 5, startup_failures),
        "readinessProbe": _http_probe(5, 5, 3),
        "livenessProbe": _http_probe(15, 10, 4),
    }


def pod_spec(spec: DeploymentSpec, settings: KubernetesConfig) -> dict[str, Any]:
    """The model-server pod: one vLLM container, GPU scheduling, shared memory and scratch volumes."""
    container = {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(SERVE_COMMAND),
        "args": serve_args(spec, settings),
        "ports": [{"name": PORT_NAME, "containerPort": settings.port, "protocol": "TCP"}],
        "env": container_env(settings),
        "resources": container_resources(settings),
        **probes(settings),
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "scratch", "mountPath": SCRATCH_DIR},
        ],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    pod: dict[str, Any] = {
        "containers": [container],
        # The server never talks to the API server: no token in the pod.
        "automountServiceAccountToken": False,
        # With hundreds of model Services in a namespace, service-link env vars would flood every pod.
        "enableServiceLinks": False,
        # inference.serve stops vLLM within 10 s of SIGTERM; the rest is margin.
        "terminationGracePeriodSeconds": 30,
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
            {"name": "scratch", "emptyDir": {"sizeLimit": "10Gi"}},
        ],
    }
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if settings.node_selector:
        pod["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod["tolerations"] = [dict(toleration) for toleration in settings.tolerations]
    if settings.runtime_class_name:
        pod["runtimeClassName"] = settings.runtime_class_name
    if settings.priority_class_name:
        pod["priorityClassName"] = settings.priority_class_name
    return pod


def spec_hash(spec: DeploymentSpec, settings: KubernetesConfig) -> str:
    """A digest of everything the pod runs: a pod carrying it serves exactly this spec and these settings."""
    material = {"pod": pod_spec(spec, settings), "annotations": object_annotations(spec)}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:NAME_HASH_CHARS]


def build_deployment(spec: DeploymentSpec, settings: KubernetesConfig) -> dict[str, Any]:
    """The apps/v1 Deployment that runs the submission's model server (one replica, Recreate)."""
    labels = object_labels(spec.submission_id, settings)
    annotations = object_annotations(spec)
    digest = spec_hash(spec, settings)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": resource_name(spec.submission_id),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {**annotations, SPEC_HASH_LABEL: digest},
        },
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 1,
            # The controller marks the rollout failed (ProgressDeadlineExceeded) when we would give up too.
            "progressDeadlineSeconds": settings.startup_deadline_s,
            # Never two servers at once: the old pod holds the GPUs the new one needs, and it serves the
            # old artifact under the same name.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(spec.submission_id)},
            "template": {
                "metadata": {
                    "labels": {**labels, SPEC_HASH_LABEL: digest},
                    "annotations": {**annotations, **scrape_annotations(settings)},
                },
                "spec": pod_spec(spec, settings),
            },
        },
    }


def build_service(spec: DeploymentSpec, settings: KubernetesConfig) -> dict[str, Any]:
    """The ClusterIP Service in front of the submission's model server."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": resource_name(spec.submission_id),
            "namespace": settings.namespace,
            "labels": object_labels(spec.submission_id, settings),
            "annotations": object_annotations(spec),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec.submission_id),
            "ports": [{"name": PORT_NAME, "port": settings.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def endpoint_url(submission_id: str, settings: KubernetesConfig) -> str:
    """The in-cluster OpenAI-compatible endpoint of a submission's Service (ends in /v1)."""
    name = resource_name(submission_id)
    return f"http://{name}.{settings.namespace}.svc.{settings.cluster_domain}:{settings.port}/v1"
