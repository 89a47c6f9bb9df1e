"""The thin client (`clients/python`, distribution `guanaco-client`) ships every first-party module the CLI
and the SDK import, and its dependencies leave the platform out."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.unit.test_cli_imports import run_python

PROJECT = Path(__file__).resolve().parents[2] / "clients" / "python" / "pyproject.toml"
PLATFORM_DISTRIBUTIONS = ("torch", "vllm", "dagster", "sqlalchemy", "transformers", "boto3")


def _packaged_modules() -> set[str]:
    included = tomllib.loads(PROJECT.read_text())["tool"]["hatch"]["build"]["targets"]["wheel"][
        "force-include"
    ]
    modules = set()
    for target in included.values():
        module = target.removesuffix(".py").replace("/", ".")
        modules.add(module.removesuffix(".__init__"))
    return modules


def test_the_thin_client_ships_every_module_the_cli_and_sdk_import():
    run = run_python(
        "-c", "import guanaco_dagster.cli, guanaco_dagster.cli.client, guanaco_dagster.cli.frames"
    )
    imported = set(run.loaded("guanaco_dagster"))
    assert imported - _packaged_modules() == set()


def test_the_thin_client_depends_on_no_platform_library():
    dependencies = tomllib.loads(PROJECT.read_text())["project"]["dependencies"]
    named = " ".join(dependencies).lower()
    assert not [name for name in PLATFORM_DISTRIBUTIONS if name in named]
