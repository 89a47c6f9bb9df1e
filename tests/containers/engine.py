"""The container engine as the on-demand tiers use it: is Docker up, is an image built, run a container.

Only `make test-containers` and `make test-cluster` use this (deploy/local/ starts the daemon; its network is
the host's: no bridge, no NAT), so every container runs with `--network host` and `--pull never`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

# The images `make images` builds (deploy/local/images.sh reads the same variables).
INFERENCE_IMAGE = os.environ.get("GUANACO_INFERENCE_IMAGE", "guanaco-inference:0.1.0-cpu")
PLATFORM_IMAGE = os.environ.get("GUANACO_PLATFORM_IMAGE", "guanaco-platform:0.1.0")


def docker(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; the result carries stdout and stderr as text."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False)


def engine_problem() -> str:
    """'' when a Docker daemon answers, else why not (the tiers skip with this message)."""
    if shutil.which("docker") is None:
        return "no container engine: the docker CLI is not installed (apt-get install docker.io)"
    info = docker("info", "--format", "{{.ServerVersion}}", timeout_s=20)
    if info.returncode != 0:
        return (
            "no container engine is running: start one, or run `make test-containers`, which starts "
            f"dockerd with host networking only ({info.stderr.strip()[-200:]})"
        )
    return ""


def image_problem(image: str) -> str:
    """'' when `image` exists locally, else what to do."""
    if docker("image", "inspect", image, timeout_s=20).returncode != 0:
        return f"image {image} is not built: run `make images`"
    return ""


@dataclass
class Container:
    """A detached container; `stop` sends SIGTERM (as a kubelet does) and waits, `remove` deletes it."""

    container_id: str

    def logs(self) -> str:
        """stdout and stderr so far."""
        result = docker("logs", self.container_id)
        return result.stdout + result.stderr

    def running(self) -> bool:
        """True while the container's main process runs."""
        state = docker("inspect", "--format", "{{.State.Running}}", self.container_id)
        return state.stdout.strip() == "true"

    def exit_code(self) -> int | None:
        """The main process's exit code once it has stopped, else None."""
        if self.running():
            return None
        state = docker("inspect", "--format", "{{.State.ExitCode}}", self.container_id)
        return int(state.stdout.strip()) if state.returncode == 0 else None

    def stop(self, grace_s: int = 20) -> None:
        """SIGTERM, then SIGKILL after `grace_s`."""
        docker("stop", "--time", str(grace_s), self.container_id, timeout_s=grace_s + 30)

    def remove(self) -> None:
        """Delete the container (stopping it first if needed)."""
        docker("rm", "--force", self.container_id)


def run_detached(image: str, args: list[str], env: dict[str, str], docker_options: list[str]) -> Container:
    """Start `image` with `args` on host networking; raise RuntimeError with docker's message if it cannot."""
    env_args = [part for name, value in env.items() for part in ("--env", f"{name}={value}")]
    result = docker(
        "run", "--detach", "--network", "host", "--pull", "never", *docker_options, *env_args, image, *args
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker run {image} failed: {result.stderr.strip()}")
    return Container(result.stdout.strip())
