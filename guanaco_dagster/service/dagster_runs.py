"""The Dagster webserver's GraphQL API, for launching runs from the service (plain httpx, no Dagster import).

Also the names of the code location's jobs, sensors and tags these launches use, so the sensors that launch
the same runs (sensors/submission_sensor.py, sensors/feedback_sensor.py) share them. When the service
launches, and why no run is launched twice: guanaco_dagster/service/run_launches.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from guanaco_dagster.submissions.submissions import PendingSubmission

# The code location and the names in it that these launches target (tests/unit/test_dagster_runs.py checks
# them against the definitions).
LOCATION_NAME = "guanaco"
REPOSITORY_NAME = "__repository__"
SUBMISSIONS_PARTITIONS = "submissions"
SUBMISSION_PIPELINE_JOB = "submission_pipeline"
SUBMISSION_SENSOR = "submission_sensor"
STRESS_TEST_SENSOR = "stress_test_sensor"
# The second run of a submission: the stress test with its blocking SLO check, then the first summary.
STRESS_TEST_ASSETS = ("latency_report", "feedback_summary")
STRESS_TEST_CHECKS = (("latency_report", "latency_within_slo"),)
# The assets a submission's first run materialises, as the submission sensor selects them (the stress test
# follows in a run of its own, sensors/stress_test_sensor.py).
SUBMISSION_RUN_ASSETS = ("raw_weights", "tensorized_artifact", "cached_s3_object", "live_deployment")
FEEDBACK_BATCH_JOB = "summarise_feedback_batch"
FEEDBACK_BATCH_OP = "summarise_feedback"
# A feedback batch in one of these states is "in flight": while one is, no other is launched.
IN_FLIGHT_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")

RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
PARTITION_TAG = "dagster/partition"
SUBMISSION_TAG = "guanaco/submission"
LAUNCHED_BY_TAG = "guanaco/launched-by"

_REPOSITORY = {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME}

_ADD_PARTITION = """
mutation AddPartition($repository: RepositorySelector!, $partitions: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repository, partitionsDefName: $partitions, partitionKey: $key) {
    __typename
    ... on Error { message }
  }
}"""

_LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}"""

_RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter, limit: 1) {
    __typename
    ... on Runs { results { runId } }
    ... on Error { message }
  }
}"""


def stops_at_deployment(selected_assets: set[str]) -> bool:
    """Whether a run selecting these assets deploys a model and leaves its stress test to a run of its own."""
    deployment, stress_test = SUBMISSION_RUN_ASSETS[-1], STRESS_TEST_ASSETS[0]
    return deployment in selected_assets and stress_test not in selected_assets


def stress_test_run_key(pipeline_run_id: str) -> str:
    """The run key of the stress test owed to a pipeline run that stopped at the deployment."""
    return f"stress-test-{pipeline_run_id}"


class DagsterUnavailable(RuntimeError):
    """The webserver could not be reached or refused the request; the sensors will launch the run."""


def feedback_batch_tags(submission_ids: list[str]) -> dict[str, str]:
    """Tags of a feedback batch run, whoever launches it (the feedback sensor or the service)."""
    return {
        "guanaco/feedback-batch-size": str(len(submission_ids)),
        # A batch of one is findable by its submission in the Dagster UI, like the pipeline's runs.
        **({SUBMISSION_TAG: submission_ids[0]} if len(submission_ids) == 1 else {}),
    }


@dataclass
class DagsterRuns:
    """The Dagster webserver's GraphQL endpoint, e.g. http://127.0.0.1:3000/graphql.

    After a failure it is left alone for `backoff_s`: a hung webserver must not hold every request that
    would launch a run for `timeout_s` (the sensors launch those runs meanwhile).
    """

    graphql_url: str
    timeout_s: float = 3.0
    backoff_s: float = 30.0
    _unavailable_until: float = 0.0

    def _request(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        if time.monotonic() < self._unavailable_until:
            raise DagsterUnavailable(f"Dagster webserver at {self.graphql_url} failed recently; not asked")
        try:
            response = httpx.post(
                self.graphql_url, json={"query": document, "variables": variables}, timeout=self.timeout_s
            )
            response.raise_for_status()
            answer = response.json()
        except (httpx.HTTPError, ValueError) as error:
            self._unavailable_until = time.monotonic() + self.backoff_s
            raise DagsterUnavailable(f"Dagster webserver at {self.graphql_url} failed: {error}") from error
        if answer.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in answer["errors"])
            raise DagsterUnavailable(f"Dagster webserver refused the request: {messages}")
        return answer["data"]

    def _launch(
        self,
        job_name: str,
        tags: dict[str, str],
        run_config: dict[str, Any] | None = None,
        assets: tuple[str, ...] | None = None,
        checks: tuple[tuple[str, str], ...] = (),
    ) -> str:
        selector: dict[str, Any] = {**_REPOSITORY, "jobName": job_name}
        if assets is not None:
            selector["assetSelection"] = [{"path": [name]} for name in assets]
            selector["assetCheckSelection"] = [{"assetKey": {"path": [a]}, "name": c} for a, c in checks]
        params = {
            "selector": selector,
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self._request(_LAUNCH_RUN, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterUnavailable(
                f"Dagster did not launch {job_name}: {result['__typename']}: {result.get('message', '')}"
            )
        return result["run"]["runId"]

    def add_submission_partition(self, submission_id: str) -> None:
        """Add the submission's dynamic partition (already there, e.g. for a redeploy, is fine)."""
        variables = {"repository": _REPOSITORY, "partitions": SUBMISSIONS_PARTITIONS, "key": submission_id}
        result = self._request(_ADD_PARTITION, variables)["addDynamicPartition"]
        if result["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise DagsterUnavailable(
                f"Dagster did not add partition {submission_id}: {result['__typename']}: "
                f"{result.get('message', '')}"
            )

    def launch_submission_run(self, pending: PendingSubmission) -> str:
        """Add the partition and launch the pipeline run the submission sensor would; its run id."""
        self.add_submission_partition(pending.id)
        tags = {
            RUN_KEY_TAG: pending.run_key,
            SENSOR_NAME_TAG: SUBMISSION_SENSOR,
            PARTITION_TAG: pending.id,
            SUBMISSION_TAG: pending.id,
            LAUNCHED_BY_TAG: "service",
        }
        return self._launch(SUBMISSION_PIPELINE_JOB, tags, assets=SUBMISSION_RUN_ASSETS)

    def launch_stress_test_run(self, submission_id: str, pipeline_run_id: str) -> str:
        """Launch the stress-test run the stress-test sensor would once `pipeline_run_id` succeeded."""
        tags = {
            RUN_KEY_TAG: stress_test_run_key(pipeline_run_id),
            SENSOR_NAME_TAG: STRESS_TEST_SENSOR,
            PARTITION_TAG: submission_id,
            SUBMISSION_TAG: submission_id,
            LAUNCHED_BY_TAG: "pipeline",
        }
        return self._launch(
            SUBMISSION_PIPELINE_JOB, tags, assets=STRESS_TEST_ASSETS, checks=STRESS_TEST_CHECKS
        )

    def feedback_batch_in_flight(self) -> bool:
        """Whether a feedback batch run is queued or running (whoever launched it)."""
        run_filter = {"pipelineName": FEEDBACK_BATCH_JOB, "statuses": list(IN_FLIGHT_STATUSES)}
        result = self._request(_RUNS, {"filter": run_filter})["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterUnavailable(f"Dagster did not list runs: {result.get('message', result)}")
        return bool(result["results"])

    def launch_feedback_batch(self, submission_ids: list[str]) -> str:
        """Launch a feedback batch refreshing these submissions' summaries; its run id."""
        run_config = {"ops": {FEEDBACK_BATCH_OP: {"config": {"submission_ids": submission_ids}}}}
        tags = {**feedback_batch_tags(submission_ids), LAUNCHED_BY_TAG: "service"}
        return self._launch(FEEDBACK_BATCH_JOB, tags, run_config)
