"""Configuration groups are plain pydantic models defined once, beside the code that reads them.

`Settings` (the environment, for every process) and the Dagster resources (the code location, shown in the
Dagster UI) both inherit the same groups, so a field is declared in one place and never copied by hand.
Secrets are marked here so resources can hand them to Dagster as `EnvVar`s instead of values.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

_SECRET = "guanaco_secret"


def secret_field(default: str | None = None, *, description: str) -> Any:
    """A field holding a secret: kept out of reprs, and passed to Dagster as an `EnvVar` when set."""
    return Field(default=default, repr=False, description=description, json_schema_extra={_SECRET: True})


def secret_field_names(model: type[BaseModel]) -> set[str]:
    """The fields of `model` declared with `secret_field`."""
    return {
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(_SECRET)
    }


def group_values(source: BaseModel, group: type[BaseModel]) -> dict[str, Any]:
    """The values `source` holds for the fields of `group` (a group it inherits, or shares fields with)."""
    names = set(group.model_fields) & set(type(source).model_fields)
    return {name: getattr(source, name) for name in names}
