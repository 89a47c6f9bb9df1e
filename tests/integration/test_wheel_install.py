"""`guanaco up` from an installed wheel: nothing is read from, or imported out of, this checkout."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from guanaco_dagster.deployment.local_process import process_tree
from guanaco_dagster.ports import free_port
from tests.integration.guanaco_up import GuanacoUp, still_running, up_env

CHECKOUT = Path(__file__).resolve().parents[2]
PACKAGES = ("guanaco_dagster", "assets", "sensors", "resources", "inference")
LOCATION_STATUS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def build_wheel(into: Path) -> Path:
    """Build the wheel from a copy of the sources, so the build leaves nothing in the shared checkout."""
    source = into / "source"
    for package in PACKAGES:
        shutil.copytree(CHECKOUT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CHECKOUT / "pyproject.toml", source)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", str(source), "-w", str(into)], check=True
    )
    return next(into.glob("guanaco-*.whl"))


def venv_python(venv: Path, code: str, cwd: Path) -> str:
    """What `code` prints when run by the virtualenv's interpreter."""
    run = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=cwd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; the other dependencies come from this environment's
    site-packages, added by a `.pth` line, so the checkout's editable-install finder never loads."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root)
    venv = root / "venv"
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(base_python), "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(venv_python(venv, "import sysconfig; print(sysconfig.get_path('purelib'))", root))
    (site_packages / "guanaco-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--no-deps", str(wheel)], check=True)
    return venv


def test_the_wheel_brings_its_own_code_not_the_checkouts(wheel_venv, tmp_path):
    module_file = venv_python(wheel_venv, "import guanaco_dagster; print(guanaco_dagster.__file__)", tmp_path)

    assert Path(module_file).is_relative_to(wheel_venv)
    assert not Path(module_file).is_relative_to(CHECKOUT)


def test_up_from_an_installed_wheel_serves_and_stops_with_everything_it_started(wheel_venv, tmp_path):
    home = tmp_path / "home"
    service_port, webserver_port = free_port(), free_port()
    env = up_env(home)
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    argv = [str(wheel_venv / "bin" / "guanaco"), "up", "--port", str(webserver_port)]
    up = GuanacoUp.start([*argv, "--service-port", str(service_port)], env, cwd=tmp_path)
    try:
        up.wait_announced()
        assert httpx.get(f"http://127.0.0.1:{service_port}/health", timeout=10).json() == {"status": "ok"}
        dagster_ui = f"http://127.0.0.1:{webserver_port}"
        assert httpx.get(f"{dagster_ui}/server_info", timeout=10).status_code == 200
        status = httpx.post(f"{dagster_ui}/graphql", json={"query": LOCATION_STATUS}, timeout=30).json()
        locations = status["data"]["workspaceOrError"]["locationEntries"]
        assert [(entry["name"], entry["loadStatus"]) for entry in locations] == [("guanaco", "LOADED")]
        started = process_tree(up.process.pid)
        commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in started}
        dagster = [
            pid
            for pid, argv in commands.items()
            if b"dagster._daemon" in argv or b"dagster_webserver" in argv
        ]
        assert len(dagster) == 2, commands
        for pid in dagster:
            assert Path(commands[pid][0].decode()).is_relative_to(wheel_venv)
            assert Path(f"/proc/{pid}/cwd").resolve() == home.resolve()
    finally:
        up.stop(signal.SIGTERM)
    assert up.process.returncode in (0, 128 + signal.SIGTERM), up.output
    assert not still_running(started)
