"""The Dagster webserver the pipeline launches follow-up runs through, as a resource (shown in the UI)."""

from dagster import ConfigurableResource


class DagsterWebserverResource(ConfigurableResource):
    """GUANACO_DAGSTER_GRAPHQL_URL: where runs are launched at once instead of a sensor tick later; None
    leaves every launch to the sensors."""

    graphql_url: str | None = None
