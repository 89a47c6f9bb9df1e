"""A new submission runs in two runs: up to its deployment, then the stress test with its SLO check, so the
check is planned (and can read "Execution failed") only for models that reached the stress test."""

from dagster import AssetCheckKey, AssetKey

from assets.latency_report import SLO_CHECK
from guanaco_dagster.definitions import build_definitions
from guanaco_dagster.settings import Settings
from sensors.jobs import STRESS_TEST, UNTIL_DEPLOYED
from sensors.stress_test_sensor import stress_test_request

LATENCY_REPORT = AssetKey("latency_report")
SLO = AssetCheckKey(LATENCY_REPORT, SLO_CHECK)
PARTITION = {"dagster/partition": "org-model_v1"}


def _planned_checks(tmp_path, selection: list[AssetKey]) -> set[AssetCheckKey]:
    defs = build_definitions(Settings(home=tmp_path, s3_endpoint="http://127.0.0.1:1"))
    job = defs.resolve_job_def("submission_pipeline").get_subset(asset_selection=set(selection))
    return set(job.asset_layer.asset_graph.asset_check_keys)


def test_the_run_up_to_the_deployment_plans_no_slo_check(tmp_path):
    assert LATENCY_REPORT not in UNTIL_DEPLOYED
    assert _planned_checks(tmp_path, UNTIL_DEPLOYED) == set()


def test_the_stress_test_run_carries_the_blocking_check_and_the_summary_it_gates(tmp_path):
    assert [LATENCY_REPORT, AssetKey("feedback_summary")] == STRESS_TEST
    assert _planned_checks(tmp_path, STRESS_TEST) == {SLO}


def test_a_run_that_deployed_a_model_is_followed_by_its_stress_test():
    request = stress_test_request("run-1", set(UNTIL_DEPLOYED), PARTITION)
    assert request is not None
    assert (request.partition_key, request.run_key) == ("org-model_v1", "stress-test-run-1")
    assert list(request.asset_selection) == STRESS_TEST


def test_runs_that_stress_tested_already_or_never_deployed_get_no_second_stress_test():
    whole_pipeline = {*UNTIL_DEPLOYED, *STRESS_TEST}  # a resume or a heal from the deploying stage
    assert stress_test_request("run-2", whole_pipeline, PARTITION) is None
    assert stress_test_request("run-3", set(STRESS_TEST), PARTITION) is None
    assert stress_test_request("run-4", {AssetKey("feedback_summary")}, PARTITION) is None
    assert stress_test_request("run-5", set(UNTIL_DEPLOYED), {}) is None
