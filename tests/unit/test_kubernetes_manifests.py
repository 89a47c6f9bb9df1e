"""Every Kubernetes manifest Guanaco can produce, and every file in deploy/, checked offline.

Schemas: the official OpenAPI schemas shipped by `kubernetes-validate`, strict (unknown fields fail), for
the oldest version we support and the newest the package knows. What schemas cannot see (names, label
syntax, secrets, cross-references, the server's argv) is asserted here directly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from itertools import product
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.deployment.kubernetes import KubernetesDeployer
from guanaco_dagster.deployment.kubernetes_config import (
    KubernetesSettings,
    is_dns1123_label,
    is_label_key,
    is_label_value,
)
from guanaco_dagster.deployment.kubernetes_manifests import (
    SERVE_COMMAND,
    build_deployment,
    build_service,
    endpoint_url,
    resource_name,
)
from guanaco_dagster.executors import choose_executor
from guanaco_dagster.settings import Settings
from inference.serve import parse_args
from resources.deployer import DeployerResource

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HELM_VALUES = DEPLOY / "helm" / "dagster-values.yaml"
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PLATFORM_SECRET_VALUE = "pl4tform-S3-secret-value"
PLATFORM_ACCESS_KEY = "AKIAPLATFORMKEYID"

SUBMISSION_IDS = [
    "org-model_v1",
    "Meta-Llama/Llama-3.1-8B-Instruct_v12",
    "UPPER_CASE.Model.With.Dots_v3",
    "модель-中文-ünïcødé_v1",
    "___",
    "x" * 300 + "_v1",
    "a" * 41 + "-" + "b" * 40,
]
SETTINGS_MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cpu-only": {
        "gpu_count": 0,
        "tolerations": [],
        "dtype": "float32",
        "cpu_limit": "8",
        "memory_limit": None,
    },
    "eight-h100s": {
        "gpu_count": 8,
        "node_selector": {
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "topology.kubernetes.io/zone": "a",
        },
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {
                "key": "spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "runtime_class_name": "nvidia",
        "priority_class_name": "guanaco-models",
        "shm_size": "64Gi",
    },
    "amd-private-registry": {
        "gpu_resource_name": "amd.com/gpu",
        "image": "registry.internal:5000/team/guanaco-inference@sha256:" + "ab" * 32,
        "image_pull_policy": "Always",
        "image_pull_secrets": ["regcred", "backup-regcred"],
        "service_account": "guanaco-model-server",
    },
    "custom-secret-and-endpoint": {
        "s3_secret_name": "coreweave-object-storage",
        "s3_endpoint": "https://object.ord1.coreweave.com",
        "s3_region": "ord1",
        "labels": {"team": "models", "cost-centre": "r_and_d.gpu"},
        "extra_env": {"HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "DEBUG"},
        "vllm_extra_args": ["--gpu-memory-utilization", "0.85"],
        "port": 9000,
        "cluster_domain": "k8s.example.internal",
    },
}


def validate(obj: dict[str, Any], where: str) -> None:
    """Strict schema validation for every supported version, with a short message on failure."""
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{where} is invalid for Kubernetes {version}: {error.message} at {list(error.absolute_path)}"
            )


def spec_for(submission_id: str) -> DeploymentSpec:
    return DeploymentSpec(submission_id, f"s3://guanaco-models/models/{'e' * 64}/", submission_id)


def settings_for(case: str) -> KubernetesSettings:
    return KubernetesSettings(**{"s3_region": "us-east-1", **SETTINGS_MATRIX[case]})


def all_labels(obj: dict[str, Any]) -> list[dict[str, str]]:
    found = [obj["metadata"].get("labels") or {}]
    template = obj.get("spec", {}).get("template")
    if template:
        found.append(template["metadata"].get("labels") or {})
    return found


def serve_part(args: list[str]) -> tuple[list[str], list[str]]:
    """inference.serve's own arguments and the vLLM arguments after `--`."""
    if "--" in args:
        cut = args.index("--")
        return args[:cut], args[cut + 1 :]
    return args, []


# The deployer's manifests ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(SETTINGS_MATRIX))
def test_deployer_manifests_validate_strictly_for_every_model_name(case: str) -> None:
    settings = settings_for(case)
    for submission_id in SUBMISSION_IDS:
        spec = spec_for(submission_id)
        validate(build_deployment(spec, settings), f"Deployment for {submission_id!r} ({case})")
        validate(build_service(spec, settings), f"Service for {submission_id!r} ({case})")


def test_names_are_dns_labels_stable_and_distinct_for_lookalike_ids() -> None:
    lookalikes = [
        "Org/Model_v1",
        "org-model-v1",
        "org_model_v1",
        "ORG.MODEL.V1",
        "org model v1",
        "orgmodel_v1",
    ]
    long_ids = ["m" * 200 + "_v1", "m" * 200 + "_v2"]
    names = {
        submission_id: resource_name(submission_id)
        for submission_id in SUBMISSION_IDS + lookalikes + long_ids
    }
    for submission_id, name in names.items():
        assert is_dns1123_label(name) and DNS1035_LABEL.match(name), (submission_id, name)
        assert name == resource_name(submission_id)
    assert len(set(names.values())) == len(names)
    assert resource_name("org-model_v1").startswith("guanaco-org-model-v1-")


@pytest.mark.parametrize("case", sorted(SETTINGS_MATRIX))
def test_labels_are_valid_and_the_service_selects_the_deployments_pods(case: str) -> None:
    settings = settings_for(case)
    for submission_id in SUBMISSION_IDS:
        deployment, service = (
            build_deployment(spec_for(submission_id), settings),
            build_service(spec_for(submission_id), settings),
        )
        for labels in all_labels(deployment) + all_labels(service):
            for key, value in labels.items():
                assert is_label_key(key) and is_label_value(value), (key, value)
        for key in deployment["metadata"].get("annotations") or {}:
            assert is_label_key(key), key
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        match_labels = deployment["spec"]["selector"]["matchLabels"]
        assert match_labels.items() <= template_labels.items()
        assert service["spec"]["selector"] == match_labels
        assert deployment["metadata"]["annotations"]["guanaco/submission-id"] == submission_id
        assert settings.labels.items() <= template_labels.items()


@pytest.mark.parametrize("case", sorted(SETTINGS_MATRIX))
def test_health_probes_target_the_named_server_port_and_startup_is_bounded(case: str) -> None:
    settings = settings_for(case)
    container = build_deployment(spec_for("org-model_v1"), settings)["spec"]["template"]["spec"][
        "containers"
    ][0]
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert port_names == {"http": settings.port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= settings.startup_deadline_s
    assert (
        startup["periodSeconds"] * startup["failureThreshold"]
        < settings.startup_deadline_s + startup["periodSeconds"]
    )


@pytest.mark.parametrize(
    ("case", "submission_id"), list(product(sorted(SETTINGS_MATRIX), SUBMISSION_IDS[:4]))
)
def test_the_container_runs_inference_serve_with_arguments_its_parser_accepts(
    case: str, submission_id: str
) -> None:
    settings, spec = settings_for(case), spec_for(submission_id)
    container = build_deployment(spec, settings)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == SERVE_COMMAND
    own, vllm = serve_part(container["args"])
    args = parse_args(own)
    assert (args.artifact_uri, args.served_model_name) == (spec.artifact_uri, spec.served_model_name)
    assert (args.host, args.port, args.dtype) == ("0.0.0.0", settings.port, settings.dtype)
    assert args.max_model_len == settings.max_model_len
    assert vllm[: len(settings.vllm_extra_args)] == settings.vllm_extra_args
    if settings.gpu_count > 1:
        assert vllm[-2:] == ["--tensor-parallel-size", str(settings.gpu_count)]


def test_inference_serve_accepts_vllm_arguments_after_a_double_dash() -> None:
    container = build_deployment(spec_for("org-model_v1"), settings_for("eight-h100s"))["spec"]["template"][
        "spec"
    ]["containers"][0]
    args = parse_args(container["args"])
    assert args.vllm_args[-2:] == ["--tensor-parallel-size", "8"] and args.eager is False


@pytest.mark.parametrize("case", sorted(SETTINGS_MATRIX))
def test_gpus_are_limits_of_the_configured_resource_only_when_asked_for(case: str) -> None:
    settings = settings_for(case)
    pod = build_deployment(spec_for("org-model_v1"), settings)["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    gpu_keys = [key for part in resources.values() for key in part if "gpu" in key]
    if settings.gpu_count:
        assert resources["limits"][settings.gpu_resource_name] == str(settings.gpu_count)
        assert gpu_keys == [settings.gpu_resource_name]
    else:
        assert gpu_keys == []
    assert pod.get("nodeSelector", {}) == settings.node_selector
    assert pod.get("tolerations", []) == settings.tolerations
    assert pod["automountServiceAccountToken"] is False


def test_credentials_reach_the_pod_only_as_secret_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUANACO_K8S_S3_SECRET_NAME", "object-storage-creds")
    resource = DeployerResource(
        kind="kubernetes",
        state_dir="/unused",
        s3_endpoint="http://seaweedfs.guanaco.svc:8333",
        s3_access_key_id=PLATFORM_ACCESS_KEY,
        s3_secret_access_key=PLATFORM_SECRET_VALUE,
        s3_region="eu-west-1",
    )
    deployer = resource.get_deployer()
    assert isinstance(deployer, KubernetesDeployer)
    for submission_id in SUBMISSION_IDS:
        for manifest in (
            build_deployment(spec_for(submission_id), deployer.settings),
            build_service(spec_for(submission_id), deployer.settings),
        ):
            text = json.dumps(manifest, ensure_ascii=False)
            assert PLATFORM_SECRET_VALUE not in text and PLATFORM_ACCESS_KEY not in text
    env = build_deployment(spec_for("m"), deployer.settings)["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    by_name = {item["name"]: item for item in env}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert by_name[key] == {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": "object-storage-creds", "key": key}},
        }
    # Endpoint and region are not secret: the platform's are the servers' unless GUANACO_K8S_* says otherwise.
    assert by_name["AWS_ENDPOINT_URL_S3"]["value"] == "http://seaweedfs.guanaco.svc:8333"
    assert by_name["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"


def test_settings_read_json_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUANACO_K8S_NODE_SELECTOR", '{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}')
    monkeypatch.setenv("GUANACO_K8S_TOLERATIONS", '[{"key": "gpu", "operator": "Exists"}]')
    monkeypatch.setenv("GUANACO_K8S_GPU_COUNT", "2")
    monkeypatch.setenv("GUANACO_K8S_S3_ENDPOINT", "https://s3.internal")
    settings = KubernetesSettings()
    assert settings.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert settings.tolerations == [{"key": "gpu", "operator": "Exists"}]
    assert settings.gpu_count == 2
    deployer = DeployerResource(
        kind="kubernetes",
        state_dir="/unused",
        s3_endpoint="http://elsewhere",
        s3_access_key_id="k",
        s3_secret_access_key="s",
    ).get_deployer()
    assert deployer.settings.s3_endpoint == "https://s3.internal"


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("namespace", "Guanaco_Models", "DNS-1123"),
        ("memory_request", "32 GB", "quantity"),
        ("node_selector", {"bad key!": "x"}, "label"),
        ("labels", {"app.kubernetes.io/name": "mine"}, "set by the deployer"),
        ("tolerations", [{"key": "gpu", "operator": "Sometimes"}], "operator"),
        ("gpu_resource_name", "gpu", "extended resource"),
        ("extra_env", {"AWS_SECRET_ACCESS_KEY": "plain"}, "must come from the Secret"),
    ],
)
def test_invalid_settings_are_refused_with_the_reason(field: str, value: Any, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        KubernetesSettings(**{field: value})


def test_the_reported_endpoint_is_the_services_cluster_dns_name() -> None:
    settings = settings_for("custom-secret-and-endpoint")
    name = resource_name("org-model_v1")
    assert endpoint_url("org-model_v1", settings) == f"http://{name}.guanaco.svc.k8s.example.internal:9000/v1"


# deploy/ ----------------------------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def platform_manifests() -> dict[str, list[dict[str, Any]]]:
    """The Kubernetes objects of deploy/k8s, by file (secrets.example.yaml included)."""
    return {path.name: yaml_documents(path) for path in sorted((DEPLOY / "k8s").glob("*.yaml"))}


def test_every_yaml_file_in_deploy_is_checked_by_this_module() -> None:
    dagster_files = {"dagster.yaml", "workspace.yaml", "kustomization.yaml"}
    for path in DEPLOY.rglob("*.y*ml"):
        if path == HELM_VALUES:
            continue  # checked by the chart-values tests below
        if path.parent == DEPLOY:
            assert path.name in dagster_files, (
                f"{path} is neither a manifest in deploy/k8s nor a known Dagster file"
            )
        else:
            assert path.parent == DEPLOY / "k8s", f"{path}: manifests belong in deploy/k8s"
            assert all("apiVersion" in doc and "kind" in doc for doc in yaml_documents(path)), path


@pytest.mark.parametrize("filename", sorted(path.name for path in (DEPLOY / "k8s").glob("*.yaml")))
def test_platform_manifest_validates_strictly(filename: str) -> None:
    for index, document in enumerate(yaml_documents(DEPLOY / "k8s" / filename)):
        validate(document, f"deploy/k8s/{filename} document {index} ({document.get('kind')})")
        assert is_dns1123_label(document["metadata"]["name"]), document["metadata"]["name"]
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "guanaco"


def test_the_instance_config_map_built_from_dagster_yaml_validates() -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dagster-instance", "namespace": "guanaco"},
        "data": {name: (DEPLOY / name).read_text() for name in ("dagster.yaml", "workspace.yaml")},
    }
    validate(config_map, "the dagster-instance ConfigMap")


def test_secrets_exist_only_as_a_placeholder_example_outside_the_kustomization() -> None:
    manifests = platform_manifests()
    secrets = [doc for docs in manifests.values() for doc in docs if doc["kind"] == "Secret"]
    assert {doc["metadata"]["name"] for doc in secrets} == {
        "guanaco-s3",
        "guanaco-platform",
        "dagster-postgresql-secret",
    }
    assert all(
        name == "secrets.example.yaml"
        for name, docs in manifests.items()
        for doc in docs
        if doc["kind"] == "Secret"
    )
    for secret in secrets:
        assert "data" not in secret and set(secret["stringData"].values()) == {"REPLACE_ME"}
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert "k8s/secrets.example.yaml" not in kustomization["resources"]
    assert "secretGenerator" not in kustomization
    for resource in kustomization["resources"]:
        assert (DEPLOY / resource).is_file(), resource
    assert sorted(kustomization["resources"]) == sorted(
        f"k8s/{name}" for name in manifests if name != "secrets.example.yaml"
    )


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_every_referenced_secret_config_map_and_service_account_is_defined() -> None:
    manifests = platform_manifests()
    defined: dict[str, set[str]] = {}
    for docs in manifests.values():
        for doc in docs:
            defined.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    defined["ConfigMap"].add("dagster-instance")  # generated by the kustomization
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    launcher = instance["run_launcher"]["config"]
    secret_refs, config_map_refs, accounts = (
        set(launcher["env_secrets"]),
        set(launcher["env_config_maps"]),
        {launcher["service_account_name"]},
    )
    for node in _walk([*[doc for docs in manifests.values() for doc in docs], instance]):
        if "secretRef" in node:
            secret_refs.add(node["secretRef"]["name"])
        if "secretKeyRef" in node:
            secret_refs.add(node["secretKeyRef"]["name"])
        if "configMapRef" in node:
            config_map_refs.add(node["configMapRef"]["name"])
        if isinstance(node.get("configMap"), dict):
            config_map_refs.add(node["configMap"]["name"])
        if "serviceAccountName" in node:
            accounts.add(node["serviceAccountName"])
    config = next(doc for doc in manifests["config.yaml"] if doc["kind"] == "ConfigMap")["data"]
    secret_refs.add(config["GUANACO_K8S_S3_SECRET_NAME"])
    accounts.add(config["GUANACO_K8S_SERVICE_ACCOUNT"])
    assert secret_refs <= defined["Secret"]
    assert config_map_refs <= defined["ConfigMap"]
    assert accounts <= defined["ServiceAccount"]
    assert launcher["instance_config_map"] == "dagster-instance"
    assert launcher["job_namespace"] == config["GUANACO_K8S_NAMESPACE"] == "guanaco"


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_grants_the_deployer_and_the_run_launcher_what_they_call() -> None:
    documents = platform_manifests()["rbac.yaml"]
    roles = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Role"}
    deployer_needs = {
        *(("apps", "deployments", verb) for verb in ("create", "get", "update", "delete", "list", "watch")),
        *(("", "services", verb) for verb in ("create", "get", "update", "delete", "list")),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "pods/log", "get"),
        ("", "events", "list"),
    }
    assert deployer_needs <= _rules(roles["guanaco-deployer"])
    launcher_needs = {("batch", "jobs", verb) for verb in ("create", "get", "list", "watch", "delete")} | {
        ("", "pods", "list")
    }
    assert launcher_needs <= _rules(roles["guanaco-run-launcher"])
    bindings = {
        (doc["roleRef"]["name"], subject["name"])
        for doc in documents
        if doc["kind"] == "RoleBinding"
        for subject in doc["subjects"]
    }
    assert {
        ("guanaco-deployer", "guanaco-run"),
        ("guanaco-run-launcher", "guanaco-run"),
        ("guanaco-run-launcher", "guanaco-dagster"),
    } <= bindings
    assert not any(doc["kind"].startswith("Cluster") for doc in documents)


def test_the_workspace_points_at_the_code_location_service() -> None:
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    services = {
        doc["metadata"]["name"]: doc
        for docs in platform_manifests().values()
        for doc in docs
        if doc["kind"] == "Service"
    }
    assert server["port"] in {port["port"] for port in services[server["host"]]["spec"]["ports"]}
    code_location = next(
        doc for doc in platform_manifests()["code-location.yaml"] if doc["kind"] == "Deployment"
    )
    command = code_location["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:5] == ["dagster", "api", "grpc", "--module-name", "guanaco_dagster.definitions"]


def test_the_config_map_names_only_real_settings_and_they_load() -> None:
    config = next(doc for doc in platform_manifests()["config.yaml"] if doc["kind"] == "ConfigMap")["data"]
    k8s_fields = {f"GUANACO_K8S_{name.upper()}" for name in KubernetesSettings.model_fields}
    platform_fields = {f"GUANACO_{name.upper()}" for name in Settings.model_fields} | {"GUANACO_EXECUTOR"}
    for key in config:
        assert key.startswith("DAGSTER_PG_") or key in k8s_fields | platform_fields, f"{key} is not a setting"
    k8s_env = {
        key.removeprefix("GUANACO_K8S_").lower(): value for key, value in config.items() if key in k8s_fields
    }
    settings = KubernetesSettings.model_validate(
        {**k8s_env, "node_selector": json.loads(k8s_env["node_selector"])}
    )
    assert settings.service_account == "guanaco-model-server" and settings.gpu_count == 1
    choose_executor(config["GUANACO_EXECUTOR"], env={})


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed"
)
def test_the_kustomization_renders_valid_objects_with_one_platform_image() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120
    )
    assert rendered.returncode == 0, rendered.stderr
    documents = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    kinds = sorted({doc["kind"] for doc in documents})
    assert "Secret" not in kinds and {"Deployment", "Service", "ConfigMap", "Role", "RoleBinding"} <= set(
        kinds
    )
    images = set()
    for document in documents:
        validate(document, f"rendered {document['kind']}/{document['metadata']['name']}")
        for node in _walk(document):
            if "image" in node and "name" in node:
                images.add(node["image"])
            if node.get("name") == "DAGSTER_CURRENT_IMAGE":
                images.add(node["value"])
    assert images == {"guanaco-platform:0.1.0"}
    instance = next(doc for doc in documents if doc["metadata"]["name"] == "dagster-instance")
    assert set(instance["data"]) == {"dagster.yaml", "workspace.yaml"}


# Executors -------------------------------------------------------------------------------------------


def test_executors_are_chosen_by_name_and_the_k8s_one_reads_its_config_from_the_environment() -> None:
    from dagster import Definitions, in_process_executor, job, op

    assert choose_executor("in_process") is in_process_executor
    step_config = {"container_config": {"resources": {"requests": {"cpu": "2"}}}}
    executor = choose_executor(
        "k8s",
        env={"GUANACO_K8S_MAX_CONCURRENT_STEPS": "2", "GUANACO_K8S_STEP_CONFIG": json.dumps(step_config)},
    )

    @op
    def noop() -> None:
        pass

    @job(executor_def=executor)
    def k8s_job() -> None:
        noop()

    Definitions.validate_loadable(Definitions(jobs=[k8s_job]))
    assert executor.name == "k8s"
    with pytest.raises(ValueError, match="GUANACO_K8S_STEP_CONFIG"):
        choose_executor("k8s", env={"GUANACO_K8S_STEP_CONFIG": "{not json"})
    with pytest.raises(ValueError, match="GUANACO_EXECUTOR"):
        choose_executor("multiprocess")


# The production Dagster instance ----------------------------------------------------------------------

KUBECONFIG_FOR_TESTS = """\
apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: tester, user: {token: not-a-real-token}}]
contexts: [{name: tests, context: {cluster: nowhere, user: tester}}]
current-context: tests
"""


@pytest.fixture
def throwaway_postgres_database() -> Any:
    """A new database on the local PostgreSQL server, dropped afterwards."""
    import uuid

    import psycopg2

    name = f"guanaco_dagster_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect("host=127.0.0.1 port=5432 user=postgres dbname=test")
    except psycopg2.OperationalError as error:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required for this test: {error}")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.mark.postgres
def test_the_production_instance_stores_runs_in_postgres_and_builds_valid_run_pods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, throwaway_postgres_database: str, s3_server: Any
) -> None:
    from dagster import DagsterInstance, DagsterRunStatus, job, op
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.job import construct_dagster_k8s_job
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
    from kubernetes.client import ApiClient

    # The only change to deploy/dagster.yaml: outside a pod there is no service account to load.
    instance_config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG_FOR_TESTS)
    instance_config["run_launcher"]["config"].update(
        load_incluster_config=False, kubeconfig_file=str(kubeconfig)
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config))
    environment = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_DB": throwaway_postgres_database,
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "GUANACO_S3_BUCKET": s3_server.bucket,
        "GUANACO_S3_ENDPOINT": s3_server.endpoint_url,
        "GUANACO_S3_REGION": s3_server.region,
        **s3_server.env,
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)

    @op
    def say_hello() -> str:
        print("hello from a step")
        return "hello"

    @job(tags={"guanaco/kind": "pipeline"})
    def hello_job() -> None:
        say_hello()

    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher) and launcher.service_account_name == "guanaco-run"
        queue = instance.run_coordinator.get_run_queue_config()
        limits = {(limit["value"], limit["limit"]) for limit in queue.tag_concurrency_limits}
        assert ("pipeline", 4) in limits

        result = hello_job.execute_in_process(instance=instance)
        assert result.success
        stored = instance.get_run_by_id(result.run_id)
        assert stored is not None and stored.status == DagsterRunStatus.SUCCESS
        assert stored.tags["guanaco/kind"] == "pipeline"
        assert any(entry.step_key == "say_hello" for entry in instance.all_logs(result.run_id))
        # Step logs outlive the run pod: the S3 compute log manager wrote them to the bucket.
        listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="dagster/compute-logs/")
        assert any(result.run_id in item["Key"] for item in listed.get("Contents", []))

        # The run pod the launcher would create for this run, built as it builds it, is valid and secret-free.
        context = launcher.get_container_context_for_run(stored)
        job_config = context.get_k8s_job_config(
            job_image="registry.example/guanaco-platform:0.1.0", run_launcher=launcher
        )
        k8s_job = construct_dagster_k8s_job(
            job_config=job_config,
            args=["dagster", "api", "execute_run", "{}"],
            job_name=f"dagster-run-{result.run_id}",
            pod_name=f"dagster-run-{result.run_id}",
            component="run_worker",
            user_defined_k8s_config=context.run_k8s_config,
            labels={"dagster/job": "hello_job", "dagster/run-id": result.run_id},
        )
        manifest = ApiClient().sanitize_for_serialization(k8s_job)
        validate(manifest, "the run worker Job")
        pod = manifest["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["serviceAccountName"] == "guanaco-run"
        env = {item["name"]: item for item in container["env"]}
        assert env["GUANACO_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "guanaco-s3"
        assert {"mountPath": "/guanaco-home", "name": "guanaco-home"} in container["volumeMounts"]
        assert {item["secretRef"]["name"] for item in container["envFrom"] if "secretRef" in item} == {
            "guanaco-platform",
            "guanaco-s3",
        }
        text = json.dumps(manifest)
        assert s3_server.secret_key not in text and s3_server.access_key not in text

        # A feedback run (its job's `dagster-k8s/config` tag) gets a small pod, not a pipeline-sized one.
        from sensors.jobs import summarise_feedback_batch

        feedback_tags = {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in summarise_feedback_batch.tags.items()
        }
        feedback_run = stored.with_tags({**stored.tags, **feedback_tags})
        feedback_context = launcher.get_container_context_for_run(feedback_run)
        feedback_job = construct_dagster_k8s_job(
            job_config=feedback_context.get_k8s_job_config(
                job_image="registry.example/guanaco-platform:0.1.0", run_launcher=launcher
            ),
            args=["dagster", "api", "execute_run", "{}"],
            job_name=f"dagster-run-{result.run_id}-feedback",
            pod_name=f"dagster-run-{result.run_id}-feedback",
            component="run_worker",
            user_defined_k8s_config=feedback_context.run_k8s_config,
            labels={"dagster/job": "summarise_feedback_batch"},
        )
        feedback_manifest = ApiClient().sanitize_for_serialization(feedback_job)
        validate(feedback_manifest, "a feedback run's Job")
        feedback_pod = feedback_manifest["spec"]["template"]["spec"]
        assert feedback_pod["containers"][0]["resources"] == {
            "requests": {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
            "limits": {"memory": "1Gi", "ephemeral-storage": "2Gi"},
        }
        assert feedback_pod["serviceAccountName"] == "guanaco-run"
    finally:
        instance.dispose()


# Metrics scraping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(SETTINGS_MATRIX))
def test_model_server_pods_ask_prometheus_to_scrape_vllms_metrics_on_the_server_port(case: str) -> None:
    settings = settings_for(case)
    template = build_deployment(spec_for("org-model_v1"), settings)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (port,) = template["spec"]["containers"][0]["ports"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"]) == str(settings.port)
    assert annotations["prometheus.io/path"] == "/metrics"
    for key in annotations:
        assert is_label_key(key), key


def _platform_deployment(filename: str) -> dict[str, Any]:
    return next(doc for doc in platform_manifests()[filename] if doc["kind"] == "Deployment")


def test_the_service_pods_are_scraped_on_the_port_that_serves_its_metrics(tmp_path: Path) -> None:
    from guanaco_dagster.service.app import create_app

    template = _platform_deployment("guanaco-service.yaml")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (port,) = template["spec"]["containers"][0]["ports"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    app = create_app(Settings(home=tmp_path, migrate_on_start=False))
    assert annotations["prometheus.io/path"] in {route.path for route in app.routes}


# The store's migration --------------------------------------------------------------------------------


def test_on_the_cluster_the_service_leaves_migrating_the_store_to_the_job(tmp_path: Path) -> None:
    import sqlalchemy

    from guanaco_dagster.service.app import create_app

    config = next(doc for doc in platform_manifests()["config.yaml"] if doc["kind"] == "ConfigMap")["data"]
    on_cluster = Settings(home=tmp_path, migrate_on_start=config["GUANACO_MIGRATE_ON_START"])
    assert on_cluster.migrate_on_start is False and Settings(home=tmp_path).migrate_on_start is True
    create_app(on_cluster)
    assert (
        sqlalchemy.inspect(sqlalchemy.create_engine(on_cluster.resolved_database_url)).get_table_names() == []
    )


def test_the_migration_job_migrates_the_store_the_service_reads(tmp_path: Path) -> None:
    import os
    import sys

    import sqlalchemy

    job = next(doc for doc in platform_manifests()["migrate-job.yaml"] if doc["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    service = _platform_deployment("guanaco-service.yaml")["spec"]["template"]["spec"]
    assert container["envFrom"] == service["containers"][0]["envFrom"]
    assert container["image"] == service["containers"][0]["image"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == service["serviceAccountName"]
    # Run the Job's own command against a database, as its pod would with GUANACO_DATABASE_URL set.
    url = f"sqlite:///{tmp_path / 'store.db'}"
    python, *args = container["command"]
    assert python == "python"
    env = {**os.environ, "GUANACO_DATABASE_URL": url, "GUANACO_HOME": str(tmp_path)}
    for _attempt in range(2):  # idempotent: a re-run changes nothing and succeeds
        done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    tables = set(sqlalchemy.inspect(sqlalchemy.create_engine(url)).get_table_names())
    assert {"alembic_version", "submissions", "feedback"} <= tables


# Dagster's Helm chart --------------------------------------------------------------------------------

# The top-level values of the dagster/dagster chart (its schema's DagsterHelmValues, Dagster 1.13).
CHART_VALUES_KEYS = {
    "global",
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "imagePullSecrets",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "retention",
    "concurrency",
    "additionalInstanceConfig",
    "rbacEnabled",
    "nameOverride",
    "fullnameOverride",
}


def helm_values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text())


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_the_chart_values_use_only_the_charts_own_keys_and_an_external_postgresql() -> None:
    values = helm_values()
    assert set(values) <= CHART_VALUES_KEYS, set(values) - CHART_VALUES_KEYS
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    (location,) = values["dagster-user-deployments"]["deployments"]
    assert location["dagsterApiGrpcArgs"] == ["--module-name", "guanaco_dagster.definitions"]
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    platform_image = kustomization["images"][0]
    for image in (location["image"], values["dagsterWebserver"]["image"], values["dagsterDaemon"]["image"]):
        assert (image["repository"], image["tag"]) == (platform_image["newName"], platform_image["newTag"])


def test_the_chart_values_kubernetes_fragments_validate_strictly() -> None:
    values = helm_values()
    (location,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    pods = {
        "webserver": values["dagsterWebserver"],
        "daemon": values["dagsterDaemon"],
        "code location": location,
    }
    for name, part in pods.items():
        container = {
            "name": "c",
            "image": f"{part['image']['repository']}:{part['image']['tag']}",
            "imagePullPolicy": part["image"]["pullPolicy"],
            "resources": part["resources"],
            "securityContext": part["securityContext"],
            "env": part.get("env", []),
            "envFrom": [{"configMapRef": ref} for ref in part["envConfigMaps"]]
            + [{"secretRef": ref} for ref in part["envSecrets"]],
        }
        pod = {"containers": [container], "securityContext": part["podSecurityContext"]}
        validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": pod}, name)
    run_k8s = launcher["runK8sConfig"]
    run_pod = {
        **run_k8s["podSpecConfig"],
        "restartPolicy": "Never",
        "volumes": launcher["volumes"],
        "containers": [
            {
                "name": "dagster",
                "image": "guanaco-platform:0.1.0",
                "resources": launcher["resources"],
                "volumeMounts": launcher["volumeMounts"],
            }
        ],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "dagster-run", "labels": launcher["labels"]},
        "spec": {**run_k8s["jobSpecConfig"], "template": {"spec": run_pod}},
    }
    validate(job, "the chart's run Job")


def test_the_chart_values_configure_dagster_as_deploy_dagster_yaml_does() -> None:
    values, instance = helm_values(), yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    daemon = values["dagsterDaemon"]
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    ours = instance["run_coordinator"]["config"]
    assert queue["maxConcurrentRuns"] == ours["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == ours["tag_concurrency_limits"]
    for section, key in (("run_monitoring", "runMonitoring"), ("run_retries", "runRetries")):
        assert {_camel(name): value for name, value in instance[section].items()} == daemon[key], section
    assert daemon["sensors"] == {_camel(name): value for name, value in instance["sensors"].items()}
    purge = instance["retention"]["sensor"]["purge_after_days"]
    assert values["retention"]["sensor"]["purgeAfterDays"] == purge
    logs = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    assert logs == {_camel(name): value for name, value in instance["compute_logs"]["config"].items()}
    launcher, our_launcher = (
        values["runLauncher"]["config"]["k8sRunLauncher"],
        instance["run_launcher"]["config"],
    )
    assert launcher["resources"] == our_launcher["resources"]
    assert launcher["labels"] == our_launcher["labels"]
    assert launcher["volumes"] == our_launcher["volumes"]
    assert [(m["name"], m["mountPath"]) for m in launcher["volumeMounts"]] == [
        (m["name"], m["mount_path"]) for m in our_launcher["volume_mounts"]
    ]
    assert [ref["name"] for ref in launcher["envSecrets"]] == our_launcher["env_secrets"]
    assert [ref["name"] for ref in launcher["envConfigMaps"]] == our_launcher["env_config_maps"]
    run_k8s = launcher["runK8sConfig"]
    assert run_k8s["podSpecConfig"]["serviceAccountName"] == our_launcher["service_account_name"]
    assert run_k8s["jobSpecConfig"] == our_launcher["run_k8s_config"]["job_spec_config"]
    (location,) = values["dagster-user-deployments"]["deployments"]
    assert location["env"] == our_launcher["run_k8s_config"]["container_config"]["env"]


def test_everything_the_chart_values_reference_is_defined_in_deploy() -> None:
    values = helm_values()
    manifests = platform_manifests()
    defined: dict[str, set[str]] = {}
    for docs in manifests.values():
        for doc in docs:
            defined.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    accounts = {
        values["global"]["serviceAccountName"],
        values["dagster-user-deployments"]["serviceAccount"]["name"],
        values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"][
            "serviceAccountName"
        ],
    }
    assert accounts <= defined["ServiceAccount"]
    secrets, config_maps = {values["global"]["postgresqlSecretName"]}, set()
    for node in _walk(values):
        if "secretKeyRef" in node:
            secrets.add(node["secretKeyRef"]["name"])
        for ref in node.get("envSecrets", []):
            secrets.add(ref["name"])
        for ref in node.get("envConfigMaps", []):
            config_maps.add(ref["name"])
    assert secrets <= defined["Secret"] and config_maps <= defined["ConfigMap"]
    # The chart replaces our Dagster Deployments; the service account it runs as may launch runs.
    bindings = {
        (doc["roleRef"]["name"], subject["name"])
        for doc in manifests["rbac.yaml"]
        if doc["kind"] == "RoleBinding"
        for subject in doc["subjects"]
    }
    assert ("guanaco-run-launcher", values["global"]["serviceAccountName"]) in bindings
