"""The embedded platform on one machine: S3 cache, Dagster daemon and webserver as supervised children.

Everything it starts stops with it: child processes run in their own process groups and are killed as
groups; inference servers watch this process and exit when it is gone.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.embedded.ports import port_open, wait_until
from guanaco_dagster.embedded.processes import die_with_parent, exit_on_sigterm, stop_process_group
from guanaco_dagster.embedded.s3_server import SeaweedS3Server
from guanaco_dagster.pipeline.s3_client import ensure_bucket
from guanaco_dagster.settings import Settings, settings_env
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Submission, SubmissionEvent
from resources.deployer import DeployerResource

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = REPO_ROOT / "workspace.yaml"
LOCAL_DAGSTER_YAML = REPO_ROOT / "dagster.yaml"


def prepare_dagster_storage(dagster_home: Path) -> None:
    """Create the instance's SQLite storage now: the daemon and webserver racing to create it crash one."""
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        # Its storage upgrade prints progress lines of its own; they mean nothing to a user here.
        with contextlib.redirect_stdout(io.StringIO()):
            instance.upgrade(print_fn=lambda _message: None)
        instance.all_instigator_state()
    finally:
        instance.dispose()


@dataclass
class EmbeddedPlatform:
    """Start with `with EmbeddedPlatform(settings) as platform:`; `platform.env` configures clients."""

    settings: Settings
    webserver_port: int | None = None
    service_port: int | None = None
    hf_endpoint: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    _children: dict[str, subprocess.Popen] = field(default_factory=dict)
    _s3: SeaweedS3Server | None = None
    _previous_sigterm: object = None

    @property
    def dagster_home(self) -> Path:
        return self.settings.home / "dagster"

    @property
    def logs_dir(self) -> Path:
        return self.settings.home / "logs"

    @property
    def webserver_url(self) -> str | None:
        return f"http://127.0.0.1:{self.webserver_port}" if self.webserver_port else None

    @property
    def service_url(self) -> str | None:
        return f"http://127.0.0.1:{self.service_port}" if self.service_port else None

    @property
    def beta_token(self) -> str:
        """The token the app's bot-response service (or a simulation of it) uses on beta routes."""
        return self.env["GUANACO_BETA_SERVICE_TOKEN"]

    def __enter__(self) -> EmbeddedPlatform:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.getsignal(signal.SIGTERM)
            exit_on_sigterm()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def start(self) -> None:
        """Start the S3 cache (unless one is configured) and Dagster; return when they answer."""
        settings = self.settings
        for folder in (settings.home, self.dagster_home, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        Store(settings.resolved_database_url).migrate()
        s3_endpoint = settings.s3_endpoint
        secret = settings.s3_secret_access_key.get_secret_value()
        if s3_endpoint is None:
            self._s3 = SeaweedS3Server(settings.home / "s3", settings.s3_access_key_id, secret)
            self._s3.start()
            s3_endpoint = self._s3.endpoint_url
        ensure_bucket(s3_endpoint, settings.s3_access_key_id, secret, settings.s3_bucket, settings.s3_region)
        shutil.copyfile(LOCAL_DAGSTER_YAML, self.dagster_home / "dagster.yaml")
        prepare_dagster_storage(self.dagster_home)
        self.env = {
            **os.environ,
            **settings_env(settings),
            "DAGSTER_HOME": str(self.dagster_home),
            "GUANACO_DATABASE_URL": settings.resolved_database_url,
            "GUANACO_S3_ENDPOINT": s3_endpoint,
            "GUANACO_PLATFORM_PID": str(os.getpid()),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        if self.hf_endpoint:
            self.env["GUANACO_HF_ENDPOINT"] = self.hf_endpoint
        if settings.beta_service_token is None:
            self.env["GUANACO_BETA_SERVICE_TOKEN"] = secrets.token_urlsafe(24)
        self._write_beta_token()
        bin_dir = Path(sys.executable).parent
        self._spawn("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(WORKSPACE)])
        if self.webserver_port:
            self._spawn(
                "webserver",
                [
                    str(bin_dir / "dagster-webserver"),
                    "-w",
                    str(WORKSPACE),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.webserver_port),
                ],
            )
        if self.service_port:
            uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "guanaco_dagster.service.app:create_app"]
            self._spawn("service", [*uvicorn, "--host", "127.0.0.1", "--port", str(self.service_port)])
        for name, port in (("webserver", self.webserver_port), ("service", self.service_port)):
            if port:
                wait_until(
                    lambda name=name, port=port: port_open("127.0.0.1", port) or self._check_alive(name),
                    timeout_s=120,
                    what=f"{name} on port {port}",
                )

    @property
    def beta_token_path(self) -> Path:
        """Where the beta service token is kept for the app's bot-response service (mode 0600)."""
        return self.settings.home / "beta-service-token"

    def _write_beta_token(self) -> None:
        path = self.beta_token_path
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
        path.write_text(self.beta_token)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs_dir / f"{name}.log").open("ab")
        self._children[name] = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def _check_alive(self, name: str) -> bool:
        process = self._children[name]
        if process.poll() is not None:
            tail = (self.logs_dir / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the platform's {name} exited with code {process.returncode}:\n{tail}")
        return False

    def check_health(self) -> None:
        """Raise if a child process died (with its log tail)."""
        for name in self._children:
            self._check_alive(name)

    def deployer(self) -> Deployer:
        """The local deployer as the platform's Dagster runs configure it (for teardown and inspection)."""
        embedded = self.settings.model_copy(
            update={
                "deployer": "local",
                "s3_endpoint": self.env.get("GUANACO_S3_ENDPOINT", self.settings.s3_endpoint),
                "platform_pid": os.getpid(),
            }
        )
        return DeployerResource.from_settings(embedded).get_deployer()

    def stop(self) -> None:
        """Stop Dagster, every inference server and the S3 cache; deployed models become `inactive`."""
        for name in ("service", "webserver", "daemon"):
            if name in self._children:
                stop_process_group(self._children.pop(name))
        if self.settings.servers_dir.exists():
            self.deployer().teardown_all()
        self._retire_deployed_models()
        if self._s3 is not None:
            self._s3.stop()
            self._s3 = None

    def _retire_deployed_models(self) -> None:
        # Their servers just stopped: routing must not send users to them until they are redeployed.
        store = Store(self.settings.resolved_database_url)
        with store.session() as session:
            for submission in session.query(Submission).filter(Submission.status == Status.DEPLOYED):
                submission.status = Status.INACTIVE
                session.add(
                    SubmissionEvent(
                        submission_id=submission.id, status=Status.INACTIVE, message="platform stopped"
                    )
                )
