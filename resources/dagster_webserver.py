"""The Dagster webserver the pipeline launches follow-up runs through, as a resource (shown in the UI)."""

from dagster import ConfigurableResource

from guanaco_dagster.service.dagster_runs import DagsterRuns, DagsterUnavailable


class DagsterWebserverResource(ConfigurableResource):
    """GUANACO_DAGSTER_GRAPHQL_URL: where runs are launched at once instead of a sensor tick later; None
    leaves every launch to the sensors."""

    graphql_url: str | None = None

    def launch_stress_test_run(self, submission_id: str, pipeline_run_id: str) -> str:
        """Launch the stress-test run owed to `pipeline_run_id`, as the stress-test sensor would; its run id.

        Raises `DagsterUnavailable` when there is no webserver or it refused: the sensor launches it then.
        """
        if not self.graphql_url:
            raise DagsterUnavailable("no Dagster webserver is configured (GUANACO_DAGSTER_GRAPHQL_URL)")
        return DagsterRuns(self.graphql_url).launch_stress_test_run(submission_id, pipeline_run_id)
