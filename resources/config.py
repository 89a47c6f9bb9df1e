"""Resources take their values from `Settings` by the groups they inherit; secrets become `EnvVar`s."""

from __future__ import annotations

import os
from typing import Any, TypeVar

from dagster import ConfigurableResource, EnvVar

from guanaco_dagster.config import group_values, secret_field_names
from guanaco_dagster.settings import Settings

ResourceT = TypeVar("ResourceT", bound=ConfigurableResource)


def env_var_name(field_name: str) -> str:
    """The environment variable of a `Settings` field."""
    return f"GUANACO_{field_name.upper()}"


def settings_value(settings: Settings, field_name: str) -> Any:
    """A settings value for a resource: a secret set in the environment stays an `EnvVar`, so the Dagster UI
    shows the variable's name, never its value."""
    name = env_var_name(field_name)
    if field_name in secret_field_names(Settings) and os.environ.get(name):
        return EnvVar(name)
    return getattr(settings, field_name)


def configured(resource_class: type[ResourceT], settings: Settings, **extra: Any) -> ResourceT:
    """`resource_class` with every field it shares with `settings` taken from them; `extra` adds the rest."""
    values = {name: settings_value(settings, name) for name in group_values(settings, resource_class)}
    return resource_class(**values, **extra)
