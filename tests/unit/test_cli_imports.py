"""The developer CLI starts light: `guanaco --help` and the HTTP client never load the platform's libraries.

Each check runs a fresh interpreter with `-X importtime` and reads the modules it imported, so what is
asserted is what a user's `guanaco` process loads, not what this test process happens to have imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

# The store, its ORM and migrations, the orchestrator and the web server: only operator commands need them.
PLATFORM_PACKAGES = ("sqlalchemy", "alembic", "dagster", "uvicorn", "guanaco_dagster.store")


@dataclass(frozen=True)
class Run:
    output: str
    modules: frozenset[str]

    def loaded(self, package: str) -> list[str]:
        """The imported modules that are `package` or inside it."""
        return sorted(m for m in self.modules if m == package or m.startswith(f"{package}."))


def run_python(*python_args: str) -> Run:
    """Run a fresh `python -X importtime ARGS` (it must succeed); its stdout and every module it imported."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *python_args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = [line for line in completed.stderr.splitlines() if line.startswith("import time:")]
    # "import time: self [us] | cumulative | imported package", then one line per module.
    return Run(completed.stdout, frozenset(line.rsplit("|", 1)[1].strip() for line in lines[1:]))


@pytest.fixture(scope="module")
def help_run() -> Run:
    return run_python("-m", "guanaco_dagster.cli", "--help")


@pytest.fixture(scope="module")
def client_run() -> Run:
    return run_python("-c", "import guanaco_dagster.cli.client")


def test_guanaco_help_lists_the_commands(help_run):
    assert "Usage: guanaco" in help_run.output
    for command in ("login", "submit", "feedback", "leaderboard", "serve", "up", "admin"):
        assert command in help_run.output


@pytest.mark.parametrize("package", PLATFORM_PACKAGES)
def test_guanaco_help_does_not_import_the_platform(help_run, package):
    assert help_run.loaded(package) == []


@pytest.mark.parametrize("package", PLATFORM_PACKAGES)
def test_the_cli_http_client_does_not_import_the_platform(client_run, package):
    assert client_run.loaded("guanaco_dagster.service.schemas")
    assert client_run.loaded(package) == []


def test_the_import_probe_sees_the_store_when_something_imports_it():
    probe = run_python("-c", "import guanaco_dagster.store.database")
    assert probe.loaded("sqlalchemy")
    assert probe.loaded("guanaco_dagster.store")
