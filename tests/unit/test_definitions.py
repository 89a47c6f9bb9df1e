"""The code location loads, and its asset graph is exactly the six assets of a submission."""

from dagster import AssetKey, Definitions

from guanaco_dagster.definitions import build_definitions
from guanaco_dagster.settings import Settings

EXPECTED_DEPENDENCIES = {
    "raw_weights": set(),
    "tensorized_artifact": {"raw_weights"},
    "cached_s3_object": {"tensorized_artifact"},
    "live_deployment": {"cached_s3_object"},
    "latency_report": {"live_deployment"},
    "feedback_summary": {"live_deployment", "latency_report"},
}


def _defs(tmp_path) -> Definitions:
    return build_definitions(Settings(home=tmp_path, s3_endpoint="http://127.0.0.1:1"))


def test_definitions_load(tmp_path):
    Definitions.validate_loadable(_defs(tmp_path))


def test_module_level_definitions_import():
    from guanaco_dagster import definitions

    assert isinstance(definitions.defs(), Definitions)  # `@definitions`: built when Dagster loads it


def test_asset_graph_is_exactly_the_six_assets_with_their_dependencies(tmp_path):
    graph = _defs(tmp_path).resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(EXPECTED_DEPENDENCIES)
    for name, parents in EXPECTED_DEPENDENCIES.items():
        actual = {p.to_user_string() for p in graph.get(AssetKey(name)).parent_keys}
        assert actual == parents, name


def test_every_asset_is_partitioned_by_submission(tmp_path):
    graph = _defs(tmp_path).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).partitions_def.name == "submissions"


def test_latency_report_carries_the_blocking_slo_check(tmp_path):
    graph = _defs(tmp_path).resolve_asset_graph()
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == {("latency_report", "latency_within_slo")}


def test_sensors_and_jobs_are_registered(tmp_path):
    defs = _defs(tmp_path)
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {
        "submission_sensor",
        "feedback_sensor",
        "pipeline_failure_sensor",
        "lifecycle_sensor",
        "reconciler_sensor",
        "self_heal_sensor",
        "stress_test_sensor",
    }
    assert {
        "submission_pipeline",
        "feedback_summary_job",
        "lifecycle_job",
        "summarise_feedback_batch",
    } <= set(repo.job_names)


def test_feedback_runs_ask_kubernetes_for_a_small_pod_not_a_pipeline_sized_one(tmp_path):
    import json

    repo = _defs(tmp_path).get_repository_def()
    for name in ("summarise_feedback_batch", "feedback_summary_job"):
        tags = repo.get_job(name).tags
        pod = tags["dagster-k8s/config"]
        pod = json.loads(pod) if isinstance(pod, str) else pod
        requests = pod["container_config"]["resources"]["requests"]
        assert (requests["cpu"], requests["memory"]) == ("250m", "512Mi"), name
        assert tags["guanaco/kind"] == "feedback", name


def test_secrets_come_from_the_environment_not_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("GUANACO_S3_SECRET_ACCESS_KEY", "s3cr3t-from-env")
    defs = _defs(tmp_path)
    resource = defs.resources["deployer"]
    assert "s3cr3t-from-env" not in repr(resource._get_non_default_public_field_values())  # noqa: SLF001


def test_kubernetes_and_reconciler_settings_are_resource_config_the_dagster_ui_shows(tmp_path, monkeypatch):
    monkeypatch.setenv("GUANACO_K8S_NAMESPACE", "models")
    monkeypatch.setenv("GUANACO_RECONCILER_STALE_AFTER_S", "120")
    defs = build_definitions(Settings(home=tmp_path, s3_endpoint="http://127.0.0.1:1", deployer="kubernetes"))
    assert defs.resources["deployer"].kubernetes.namespace == "models"
    assert defs.resources["reconciler"].stale_after_s == 120


def test_every_resource_field_comes_from_one_declaration(tmp_path):
    # Settings and the resources inherit the same config groups: the same field, the same default.
    from guanaco_dagster.config import group_values

    settings = Settings(home=tmp_path, stress_requests=5, hub_retries=2, vllm_kv_cache_gib=3)
    resources = _defs(tmp_path).resources
    for name in ("hub", "pipeline", "deployer"):
        resource = resources[name]
        shared = group_values(settings, type(resource))
        assert shared, name
        assert set(shared) <= set(type(resource).model_fields), name
    configured = build_definitions(settings).resources
    assert configured["pipeline"].stress_requests == 5
    assert configured["hub"].hub_retries == 2
    assert configured["deployer"].vllm_kv_cache_gib == 3
