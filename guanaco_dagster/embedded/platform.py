"""The embedded platform on one machine: S3 cache, Dagster code server, daemon and webserver as supervised
children.

A child that crashes is restarted with backoff (`supervisor`); model servers watch this process, not the
children, so they keep serving through any restart. Everything it starts stops with it: children run in
their own process groups and are killed as groups; inference servers exit when this process is gone.
Stopping keeps the world: deployed models stay `deployed` and serve again after the next start
(`restore`), and the beta service token is kept under the platform home (`beta_token`).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from guanaco_dagster.config import group_values
from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.deployment.local_process import LocalProcessDeployer, stop_process_groups
from guanaco_dagster.embedded.beta_token import load_or_create_beta_token
from guanaco_dagster.embedded.code_server import CODE_LOCATION_MODULE, CODE_LOCATION_NAME
from guanaco_dagster.embedded.processes import die_with_parent, exit_on_sigterm, stop_process_group
from guanaco_dagster.embedded.restore import deployed_models, forget_endpoints, restore_deployed_models
from guanaco_dagster.embedded.s3_server import SeaweedS3Server
from guanaco_dagster.embedded.supervisor import SupervisedChild, Supervisor
from guanaco_dagster.ports import free_port, port_open, wait_until
from guanaco_dagster.settings import Settings, settings_env
from guanaco_dagster.stages.context_length import cached_model_max_len
from guanaco_dagster.stages.s3_client import S3Bucket, ensure_bucket
from guanaco_dagster.store.database import Store
from resources.deployer import DeployerResource

# One code location, loaded by module name: it works the same from a checkout and from an installed wheel.
# Without a code server of the platform's own, each of the daemon and the webserver starts Dagster's.
WORKSPACE_YAML = f"""load_from:
  - python_module:
      module_name: {CODE_LOCATION_MODULE}
      attribute: defs
      location_name: {CODE_LOCATION_NAME}
"""
CODE_SERVER_WORKSPACE_YAML = """load_from:
  - grpc_server:
      host: 127.0.0.1
      port: {port}
      location_name: {location}
"""


def write_dagster_config(dagster_home: Path, code_server_port: int | None = None) -> None:
    """Write the embedded instance config (shipped in this package) and the workspace into `dagster_home`.

    With `code_server_port`, the workspace is the platform's code server there (`code_server`).
    """
    instance_yaml = resources.files("guanaco_dagster.embedded").joinpath("dagster.yaml").read_text()
    (dagster_home / "dagster.yaml").write_text(instance_yaml)
    workspace = (
        CODE_SERVER_WORKSPACE_YAML.format(port=code_server_port, location=CODE_LOCATION_NAME)
        if code_server_port
        else WORKSPACE_YAML
    )
    (dagster_home / "workspace.yaml").write_text(workspace)


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
    """Start with `with EmbeddedPlatform(settings) as platform:`; `platform.env` configures clients.

    `rotate_beta_token` replaces the saved beta service token with a new one (a token set in the settings
    always wins); `restore_models=False` leaves `deployed` models without a server after the start.
    """

    settings: Settings
    webserver_port: int | None = None
    service_port: int | None = None
    hf_endpoint: str | None = None
    rotate_beta_token: bool = False
    restore_models: bool = True
    # The platform's own code server (`code_server`); a free port is taken at the start when None.
    code_server_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    # What the start did for each model that was `deployed` ("re-adopted …", "restarted …", "failed: …").
    restored: dict[str, str] = field(default_factory=dict)
    _children: dict[str, subprocess.Popen] = field(default_factory=dict)
    _s3: SeaweedS3Server | None = None
    _supervisor: Supervisor | None = None
    _restore_thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    # Process groups of crashed code servers: their runs in flight may finish; they stop with the platform.
    _orphaned_groups: set[int] = field(default_factory=set)
    _previous_sigterm: object = None

    @property
    def dagster_home(self) -> Path:
        return self.settings.home / "dagster"

    @property
    def logs_dir(self) -> Path:
        return self.settings.home / "logs"

    @property
    def platform_log_path(self) -> Path:
        """Where the platform records restarts of its children and of model servers."""
        return self.logs_dir / "platform.log"

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

    @property
    def s3_server(self) -> SeaweedS3Server | None:
        """The embedded S3 server (None when an external S3 is configured)."""
        return self._s3

    @property
    def supervisor(self) -> Supervisor | None:
        """The supervisor restarting crashed children (None before `start`)."""
        return self._supervisor

    def child_pid(self, name: str) -> int | None:
        """Process id of a running child ("code_server", "daemon", "webserver", "service" or "s3"); None if
        it is not running."""
        if name == "s3":
            return self._s3.pid if self._s3 is not None else None
        process = self._children.get(name)
        return process.pid if process is not None and process.poll() is None else None

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
        """Start the S3 cache (unless one is configured) and Dagster; return when they answer.

        Then crashed children are restarted in the background, and `deployed` models are brought back
        to serving (see `wait_until_restored`).
        """
        settings = self.settings
        self._stopping.clear()
        for folder in (settings.home, self.dagster_home, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        Store(settings.resolved_database_url).migrate()
        s3_endpoint = settings.s3_endpoint
        secret = settings.s3_secret_access_key
        if s3_endpoint is None:
            self._s3 = SeaweedS3Server(settings.home / "s3", settings.s3_access_key_id, secret)
            self._s3.start()
            s3_endpoint = self._s3.endpoint_url
        ensure_bucket(s3_endpoint, settings.s3_access_key_id, secret, settings.s3_bucket, settings.s3_region)
        self.code_server_port = self.code_server_port or free_port()
        write_dagster_config(self.dagster_home, self.code_server_port)
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
        if self.webserver_url and settings.dagster_graphql_url is None:
            # The service launches runs through the webserver at once instead of waiting for a sensor tick
            # (GUANACO_DAGSTER_GRAPHQL_URL set empty leaves every launch to the sensors).
            self.env["GUANACO_DAGSTER_GRAPHQL_URL"] = f"{self.webserver_url}/graphql"
        configured = settings.beta_service_token
        self.env["GUANACO_BETA_SERVICE_TOKEN"] = load_or_create_beta_token(
            self.beta_token_path,
            configured.get_secret_value() if configured is not None else None,
            rotate=self.rotate_beta_token,
        )
        for name in self._commands():
            self._spawn(name)
            if name == "code_server":
                # The daemon and the webserver load the code location from it as they start.
                wait_until(
                    lambda: port_open("127.0.0.1", self.code_server_port) or self._check_alive("code_server"),
                    timeout_s=120,
                    what=f"code server on port {self.code_server_port}",
                )
        for name, port in (("webserver", self.webserver_port), ("service", self.service_port)):
            if port:
                wait_until(
                    lambda name=name, port=port: port_open("127.0.0.1", port) or self._check_alive(name),
                    timeout_s=120,
                    what=f"{name} on port {port}",
                )
        self._supervisor = Supervisor(self._supervised_children(), report=self._report).start()
        # The first submission (or restored model) adopts a server that is already imported.
        self.deployer().ensure_spare()
        if self.restore_models:
            self._restore_thread = threading.Thread(
                target=self._restore_models, name="guanaco-restore", daemon=True
            )
            self._restore_thread.start()

    def _commands(self) -> dict[str, list[str]]:
        """The argv of each Dagster/service child this platform runs."""
        # Modules of this interpreter, not console scripts: those may live in another environment's bin/.
        workspace = str(self.dagster_home / "workspace.yaml")
        code_server = [sys.executable, "-m", "guanaco_dagster.embedded.code_server"]
        commands = {
            "code_server": [*code_server, "--host", "127.0.0.1", "--port", str(self.code_server_port)],
            "daemon": [sys.executable, "-m", "dagster._daemon", "run", "-w", workspace],
        }
        if self.webserver_port:
            commands["webserver"] = [
                *(sys.executable, "-m", "dagster_webserver"),
                *("-w", workspace, "-h", "127.0.0.1", "-p", str(self.webserver_port)),
            ]
        if self.service_port:
            uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "guanaco_dagster.service.app:create_app"]
            commands["service"] = [*uvicorn, "--host", "127.0.0.1", "--port", str(self.service_port)]
        return commands

    @property
    def beta_token_path(self) -> Path:
        """Where the beta service token is kept for the app's bot-response service (mode 0600)."""
        return self.settings.home / "beta-service-token"

    def _spawn(self, name: str) -> None:
        with (self.logs_dir / f"{name}.log").open("ab") as log:
            self._children[name] = subprocess.Popen(
                self._commands()[name],
                # Not a checkout: `python -m` puts its cwd first on sys.path.
                cwd=self.settings.home,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def _respawn(self, name: str) -> None:
        crashed = self._children[name]
        if name == "code_server":
            # Its run workers share its process group: runs in flight may still finish.
            self._orphaned_groups.add(crashed.pid)
        else:
            # Nothing else of a crashed daemon, webserver or service is worth keeping.
            stop_process_groups({crashed.pid}, grace_s=5.0)
        self._spawn(name)

    def _supervised_children(self) -> list[SupervisedChild]:
        children = [
            SupervisedChild(
                name=name,
                restart=lambda name=name: self._respawn(name),
                exit_code=lambda name=name: self._children[name].poll(),
                log_path=self.logs_dir / f"{name}.log",
            )
            for name in self._children
        ]
        if self._s3 is not None:
            s3 = self._s3
            children.append(
                SupervisedChild(
                    name="s3", restart=s3.restart, exit_code=lambda: s3.exit_code, log_path=s3.log_path
                )
            )
        return children

    def _report(self, message: str) -> None:
        """Record an event of the platform in its log and on the operator's console (stderr)."""
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with contextlib.suppress(OSError), self.platform_log_path.open("a") as log:
            log.write(f"{stamp} {message}\n")
        Console(stderr=True).print(f"[yellow]{escape(message)}[/]", highlight=False)

    def _check_alive(self, name: str) -> bool:
        process = self._children[name]
        if process.poll() is not None:
            tail = (self.logs_dir / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the platform's {name} exited with code {process.returncode}:\n{tail}")
        return False

    def check_health(self) -> None:
        """Raise if the supervisor stopped watching; crashed children are restarted, not reported here."""
        if self._supervisor is not None and not self._supervisor.running and not self._stopping.is_set():
            raise RuntimeError("the platform's supervisor stopped; restart `guanaco up`")

    def deployer(self) -> Deployer:
        """The local deployer as the platform's Dagster runs configure it (for teardown and inspection)."""
        embedded = self.settings.model_copy(
            update={
                "deployer": "local",
                "s3_endpoint": self.env.get("GUANACO_S3_ENDPOINT", self.settings.s3_endpoint),
                "platform_pid": os.getpid(),
            }
        )
        # Plain values, not `EnvVar`s: this resource is used in this process, outside any Dagster run.
        resource = DeployerResource(
            **group_values(embedded, DeployerResource), kind="local", state_dir=str(embedded.servers_dir)
        )
        return resource.get_deployer()

    def _restore_models(self) -> None:
        store = Store(self.settings.resolved_database_url)
        self.restored = restore_deployed_models(
            store,
            self.deployer(),
            report=self._report,
            stopping=self._stopping.is_set,
            max_model_len=self._served_max_model_len,
        )

    def _served_max_model_len(self, artifact_uri: str) -> int:
        """The context length a cached model is served with, as `live_deployment` chose it."""
        settings = self.settings
        bucket = S3Bucket(
            self.env.get("GUANACO_S3_ENDPOINT", settings.s3_endpoint or ""),
            settings.s3_access_key_id,
            settings.s3_secret_access_key,
            settings.s3_bucket,
            settings.s3_region,
        )
        try:
            return cached_model_max_len(bucket.client(), artifact_uri, settings.vllm_max_model_len)
        except Exception:  # noqa: BLE001 - the restart itself will say what is wrong with the cache
            return settings.vllm_max_model_len

    def wait_until_warm(self, timeout_s: float = 180.0) -> float:
        """Wait until the spare model server is imported and waiting (at once without `server_spare`);
        the seconds waited. The next submission then starts from a warm server."""
        started = time.monotonic()
        deployer = self.deployer()
        if not self.settings.server_spare or not isinstance(deployer, LocalProcessDeployer):
            return 0.0
        wait_until(deployer.spare_warm, timeout_s=timeout_s, interval_s=0.25, what="a warm spare server")
        return time.monotonic() - started

    def wait_until_restored(self, timeout_s: float = 600.0) -> dict[str, str]:
        """Wait until every model that was `deployed` at the start serves again (or failed); the outcomes."""
        if self._restore_thread is not None:
            self._restore_thread.join(timeout_s)
            if self._restore_thread.is_alive():
                raise TimeoutError(f"deployed models were not restored within {timeout_s:.0f} s")
        return self.restored

    def stop(self) -> None:
        """Stop the children, every inference server and the S3 cache; `deployed` models stay deployed.

        Their endpoints are cleared so nothing routes to the stopped servers; the next start brings them
        back.
        """
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.stop()
        try:
            for name in ("service", "webserver", "daemon", "code_server"):
                if name in self._children:
                    stop_process_group(self._children.pop(name))
            if self._orphaned_groups:
                stop_process_groups(self._orphaned_groups)
                self._orphaned_groups.clear()
            if self.settings.servers_dir.exists():
                self.deployer().teardown_all()
            if self._restore_thread is not None:
                self._restore_thread.join()
            if self.env:
                store = Store(self.settings.resolved_database_url)
                forget_endpoints(store, [model.submission_id for model in deployed_models(store)])
        finally:
            if self._s3 is not None:
                self._s3.stop()
                self._s3 = None
