"""Settings of the Kubernetes deployer: environment variables with a `GUANACO_K8S_` prefix.

Complex values (dicts, lists) are JSON, e.g.
`GUANACO_K8S_NODE_SELECTOR='{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}'`.
Values are checked here, when the settings load, so a typo fails the first deploy with the variable's
name instead of a 422 from the API server (or, worse, a pod that never schedules).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# https://kubernetes.io/docs/concepts/overview/working-with-objects/names/
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
# resource.Quantity's serialised forms: 500m, 4, 1.5, 32Gi, 1e3, 64G.
QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|[KMGTPE]i|[mkMGTPE])?$")
TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}

# Labels the deployer sets itself; user labels may not override them (selectors depend on them).
RESERVED_LABEL_PREFIXES = ("guanaco/", "app.kubernetes.io/")


def is_dns1123_label(name: str) -> bool:
    """True for a valid DNS-1123 label (names of Deployments, Services, namespaces): ≤ 63 chars."""
    return len(name) <= 63 and bool(DNS1123_LABEL.match(name))


def is_label_key(key: str) -> bool:
    """True for a valid label/annotation key: optional DNS-subdomain prefix, '/', name of ≤ 63 chars."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(LABEL_NAME.match(name))


def is_label_value(value: str) -> bool:
    """True for a valid label value: ≤ 63 chars of alphanumerics, '-', '_', '.', alphanumeric ends."""
    return len(value) <= 63 and bool(LABEL_VALUE.match(value))


class KubernetesConfig(BaseModel):
    """Where and how the vLLM model servers run on Kubernetes (one Deployment + Service per submission)."""

    # Where ------------------------------------------------------------------------------------------
    namespace: str = Field(
        default="guanaco", description="Namespace of the model-server Deployments and Services."
    )
    cluster_domain: str = Field(
        default="cluster.local",
        description="The cluster's DNS domain, used in the reported endpoint <service>.<ns>.svc.<domain>.",
    )
    kubeconfig: str | None = Field(
        default=None,
        description="Path of a kubeconfig file; unset: in-cluster config when running in a pod, else "
        "the default kubeconfig (~/.kube/config or $KUBECONFIG).",
    )
    in_cluster: bool | None = Field(
        default=None,
        description="Force in-cluster (service-account) config on or off; unset: auto-detect from "
        "KUBERNETES_SERVICE_HOST.",
    )

    # What runs --------------------------------------------------------------------------------------
    image: str = Field(
        default="guanaco-inference:0.1.0",
        description="The model-server image built from inference/Dockerfile (vLLM + the guanaco-inference "
        "package), pushed to a registry the nodes can pull from.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Pull policy of the model-server container."
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Names of docker-registry Secrets for a private registry."
    )
    service_account: str | None = Field(
        default=None,
        description="ServiceAccount of the model-server pods (they need no API access; the token is not "
        "mounted). Unset: the namespace's default.",
    )
    port: int = Field(
        default=8000, ge=1, le=65535, description="Port vLLM listens on and the Service exposes."
    )
    dtype: str = Field(default="auto", description="vLLM --dtype: 'auto' on GPUs; 'float32' for CPU images.")
    max_model_len: int = Field(default=4096, ge=1, description="vLLM --max-model-len (context length).")
    kv_cache_gib: int = Field(
        default=1, ge=0, description="CPU KV cache in GiB (CPU images only; GPUs size it from free memory)."
    )
    vllm_extra_args: list[str] = Field(
        default_factory=list,
        description='Extra vLLM server arguments, e.g. ["--gpu-memory-utilization", "0.85"]; passed '
        "after '--' to inference.serve.",
    )
    extra_env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra plain environment variables of the model server (never secrets: use a Secret).",
    )

    # S3 cache ---------------------------------------------------------------------------------------
    s3_secret_name: str = Field(
        default="guanaco-s3",
        description="Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; referenced by name, "
        "its values never appear in a manifest.",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="S3 endpoint URL as seen from the model-server pods (AWS_ENDPOINT_URL_S3); unset: the "
        "platform's GUANACO_S3_ENDPOINT, else AWS's own endpoints.",
    )
    s3_region: str | None = Field(
        default=None, description="AWS_DEFAULT_REGION of the model server; unset: GUANACO_S3_REGION."
    )

    # Scheduling and resources -----------------------------------------------------------------------
    gpu_count: int = Field(
        default=1, ge=0, description="GPUs per model server; 0 for CPU images. >1 adds tensor parallelism."
    )
    gpu_resource_name: str = Field(
        default="nvidia.com/gpu", description="Extended resource name of the GPUs (device plugin's)."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the model-server pods require."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        description="Pod tolerations (Kubernetes JSON form); the default tolerates the usual GPU-node taint.",
    )
    runtime_class_name: str | None = Field(
        default=None, description="RuntimeClass for GPU containers where the cluster needs one (e.g. nvidia)."
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the model servers.")
    cpu_request: str = Field(default="4", description="CPU request of the model-server container.")
    cpu_limit: str | None = Field(default=None, description="CPU limit; unset: none (avoids CFS throttling).")
    memory_request: str = Field(default="16Gi", description="Memory request of the model-server container.")
    memory_limit: str | None = Field(
        default="64Gi", description="Memory limit of the model-server container."
    )
    shm_size: str = Field(
        default="8Gi",
        description="Size of the in-memory /dev/shm (NCCL and vLLM workers need more than 64M).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on every object (cost centre, team); guanaco/ and app.kubernetes.io/ "
        "keys are reserved.",
    )

    # Waiting ----------------------------------------------------------------------------------------
    startup_deadline_s: int = Field(
        default=900,
        ge=1,
        description="Bound on scheduling + image pull + weight streaming until /health answers; also the "
        "Deployment's progressDeadlineSeconds and the startupProbe's budget.",
    )
    fail_fast: bool = Field(
        default=True,
        description="Give up before the deadline on ImagePullBackOff, CrashLoopBackOff, "
        "CreateContainerConfigError (unschedulable pods always get the full deadline: an autoscaler may "
        "add a node).",
    )
    deletion_timeout_s: float = Field(
        default=120.0,
        ge=0,
        description="How long deploy waits for a terminating Deployment of the same submission to go.",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_is_dns_label(cls, value: str) -> str:
        if not is_dns1123_label(value):
            raise ValueError(f"GUANACO_K8S_NAMESPACE {value!r} is not a DNS-1123 label (a-z, 0-9, '-')")
        return value

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit", "shm_size")
    @classmethod
    def _is_quantity(cls, value: str | None) -> str | None:
        if value is not None and not QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 4, 32Gi)")
        return value

    @field_validator("gpu_resource_name")
    @classmethod
    def _gpu_resource_is_qualified(cls, value: str) -> str:
        if "/" not in value or not is_label_key(value):
            raise ValueError(f"{value!r} is not an extended resource name like nvidia.com/gpu")
        return value

    @field_validator("labels", "node_selector")
    @classmethod
    def _labels_are_valid(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            if not is_label_key(key) or not is_label_value(label):
                raise ValueError(f"{key}={label!r} is not a valid Kubernetes label")
        return value

    @field_validator("labels")
    @classmethod
    def _labels_are_not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = [key for key in value if key.startswith(RESERVED_LABEL_PREFIXES)]
        if reserved:
            raise ValueError(f"labels {reserved} are set by the deployer; choose other keys")
        return value

    @field_validator("tolerations")
    @classmethod
    def _tolerations_are_valid(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for toleration in value:
            unknown = set(toleration) - TOLERATION_KEYS
            if unknown:
                raise ValueError(f"toleration {toleration} has unknown keys {sorted(unknown)}")
            if toleration.get("operator", "Equal") not in ("Equal", "Exists"):
                raise ValueError(f"toleration {toleration}: operator must be Equal or Exists")
            if toleration.get("effect", "NoSchedule") not in (
                "",
                "NoSchedule",
                "PreferNoSchedule",
                "NoExecute",
            ):
                raise ValueError(
                    f"toleration {toleration}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
                )
        return value

    @field_validator("extra_env")
    @classmethod
    def _extra_env_spares_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        # Credentials come from the Secret; a plain value here would land in the manifest.
        forbidden = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(value)
        if forbidden:
            raise ValueError(f"{sorted(forbidden)} must come from the Secret GUANACO_K8S_S3_SECRET_NAME")
        return value

    @model_validator(mode="after")
    def _one_config_source(self) -> KubernetesConfig:
        if self.in_cluster and self.kubeconfig:
            raise ValueError("set either GUANACO_K8S_IN_CLUSTER=true or GUANACO_K8S_KUBECONFIG, not both")
        return self


class KubernetesSettings(KubernetesConfig, BaseSettings):
    """`KubernetesConfig` read from `GUANACO_K8S_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="GUANACO_K8S_", extra="ignore")
