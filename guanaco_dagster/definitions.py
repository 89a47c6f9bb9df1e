"""The Guanaco code location: the definitions of each area (assets, sensors, resources) merged, with the
executor chosen once, here. Built when Dagster loads the location, from the environment at that moment."""

from __future__ import annotations

from dagster import Definitions, definitions

import assets
import sensors
from guanaco_dagster.executors import choose_executor
from guanaco_dagster.settings import Settings, load_settings
from resources import build_resources, resource_definitions

__all__ = ["build_definitions", "build_resources", "defs"]


def build_definitions(settings: Settings | None = None) -> Definitions:
    """The code location's definitions for `settings` (the environment's when omitted)."""
    settings = settings or load_settings()
    return Definitions.merge(
        assets.defs,
        sensors.defs,
        resource_definitions(settings),
        # Per-step processes cost ~3 s each here; one pod per run on Kubernetes (docs/kubernetes.md).
        Definitions(executor=choose_executor(settings.executor)),
    )


@definitions
def defs() -> Definitions:
    """What `dagster` loads from this module (workspace.yaml)."""
    return build_definitions()
