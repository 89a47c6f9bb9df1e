"""How deployed servers are watched and healed, as a Dagster resource (shown in the Dagster UI)."""

from dagster import ConfigurableResource

from guanaco_dagster.beta.health import HealthConfig


class HealthResource(ConfigurableResource, HealthConfig):
    """`GUANACO_HEALTH_*`: check interval and timeout, when a dead server is healed, heals per hour."""
