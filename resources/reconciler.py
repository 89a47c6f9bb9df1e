"""When the reconciler calls a submission stale, as a Dagster resource (shown in the Dagster UI)."""

from dagster import ConfigurableResource

from guanaco_dagster.submissions.reconciler import ReconcilerConfig


class ReconcilerResource(ConfigurableResource, ReconcilerConfig):
    """`GUANACO_RECONCILER_*`: staleness threshold and automatic resumes."""
