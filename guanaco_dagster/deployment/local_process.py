"""Run inference servers as local processes: `python -m inference.serve`, one process group each.

A server runs in its own session so it outlives the Dagster run process that deployed it; with
`platform_pid` it still exits when the platform does. What was started is recorded in
`state_dir/<id>.json` (the log goes to `state_dir/<id>.log`), so any process can find or stop it later.
Each server decodes on cores of its own (spread round-robin) and sees only an allow-listed environment
with S3 read credentials (`server_environment`).

Start-up and memory: vLLM runs the model in its engine process (`uni` executor: no worker process), keeps
its model-class cache under `state_dir/vllm-cache` (a cold cache costs one model inspection in a
subprocess), and sizes each KV cache for `kv_cache_sequences` sequences of the served context length
instead of a flat size.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from guanaco_dagster.deployment.base import Deployer, Deployment, DeploymentError, DeploymentSpec
from guanaco_dagster.deployment.cpu_sets import available_cores, choose_cores, omp_threads_bind
from guanaco_dagster.deployment.process_memory import processes_memory
from guanaco_dagster.deployment.server_environment import model_server_environment
from guanaco_dagster.deployment.server_log import failure_reason, strip_ansi
from guanaco_dagster.ports import free_port
from inference.warm_vllm import WAITING_LINE

HOST = "127.0.0.1"
# The record of the spare server (`keep_spare`): not a submission id (those never start with a dot).
SPARE_ID = ".spare"
SPARE_AWAIT_S = 30 * 24 * 3600.0
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 40


def process_start_ticks(pid: int) -> int | None:
    """Start time of a live (non-zombie) process in clock ticks; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _live_processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group id) of every live (non-zombie) process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def process_group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group `pgid`."""
    return sorted(pid for pid, (_, group) in _live_processes().items() if group == pgid)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its live descendants (empty when `pid` is gone)."""
    table = _live_processes()
    if pid not in table:
        return []
    tree, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, (ppid, _) in table.items() if ppid == parent]
        tree += children
        frontier += children
    return sorted(tree)


def server_process_groups(pid: int) -> set[int]:
    """Process groups of a server and its descendants: `inference.serve` runs vLLM in a group of its own."""
    table = _live_processes()
    return {table[member][1] for member in process_tree(pid) if member in table} | {pid}


def stop_process_groups(pgids: set[int], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every process of the groups, SIGKILL whatever is left after `grace_s`; wait until empty."""

    def remaining() -> bool:
        return any(process_group_members(pgid) for pgid in pgids)

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while remaining() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not remaining():
            return


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ('' when missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def write_json_atomically(path: Path, value: Any) -> None:
    """Write JSON so that a reader polling `path` never sees half of it (a rename replaces it whole)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2))
    temporary.replace(path)


def file_stem(submission_id: str) -> str:
    """The submission id as a file name: the deployer's records, locks and logs are named after it."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", submission_id)


def server_log_path(state_dir: Path, submission_id: str) -> Path:
    """Where a local server writes its log (kept after it died, until the model is deployed again)."""
    return Path(state_dir) / f"{file_stem(submission_id)}.log"


class LocalProcessDeployer(Deployer):
    """Deploy each submission as a local `inference.serve` process on a free loopback port."""

    def __init__(
        self,
        state_dir: Path,
        s3_endpoint_url: str,
        s3_access_key: str,
        s3_secret_key: str,
        s3_region: str = "us-east-1",
        dtype: str = "float32",
        kv_cache_gib: int | None = None,
        max_model_len: int = 2048,
        startup_timeout_s: float = 300.0,
        platform_pid: int | None = None,
        smoke_test: bool = True,
        extra_env: Mapping[str, str] | None = None,
        s3_read_access_key: str | None = None,
        s3_read_secret_key: str | None = None,
        cores_per_server: int | None = 1,
        kv_cache_sequences: int = 8,
        uni_executor: bool = True,
        vllm_cache_dir: Path | None = None,
        prestart_timeout_s: float = 900.0,
        keep_spare: bool = False,
    ) -> None:
        """`s3_read_*`: read-only S3 credentials for the servers (default: the cache's own keys).

        `cores_per_server`: how many cores each server's worker is bound to (None: vLLM's own choice,
        which puts every server on the same core). `kv_cache_gib` None sizes each KV cache for
        `kv_cache_sequences` sequences (the stress test's concurrency) of the served context length.
        `vllm_cache_dir`: vLLM's cache root (`VLLM_CACHE_ROOT`), default `state_dir/vllm-cache`, unless
        the environment sets one. `keep_spare`: keep one server imported and waiting (`ensure_spare`), which
        the next `prestart` adopts instead of starting one.
        """
        self.state_dir = Path(state_dir)
        self.s3_endpoint_url = s3_endpoint_url
        self.s3_access_key = s3_access_key
        self.s3_secret_key = s3_secret_key
        self.s3_region = s3_region
        self.dtype = dtype
        self.kv_cache_gib = kv_cache_gib
        self.max_model_len = max_model_len
        self.startup_timeout_s = startup_timeout_s
        self.platform_pid = platform_pid
        # /health answers before the first forward pass; one 1-token completion proves the model runs.
        self.smoke_test = smoke_test
        self.extra_env = dict(extra_env or {})
        self.s3_read_access_key = s3_read_access_key or s3_access_key
        self.s3_read_secret_key = s3_read_secret_key or s3_secret_key
        self.cores_per_server = cores_per_server
        self.kv_cache_sequences = kv_cache_sequences
        self.uni_executor = uni_executor
        self.vllm_cache_dir = Path(vllm_cache_dir) if vllm_cache_dir else self.state_dir / "vllm-cache"
        self.prestart_timeout_s = prestart_timeout_s
        self.keep_spare = keep_spare
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # Paths and records -------------------------------------------------------------------------------

    def state_path(self, submission_id: str) -> Path:
        """Where the server record of a submission lives."""
        return self.state_dir / f"{file_stem(submission_id)}.json"

    def work_path(self, submission_id: str) -> Path:
        """The parent of the server's temporary config folder (removed when the server stops).

        Short and under the system's temp folder: vLLM puts its IPC sockets in there, and a socket path may
        not exceed 107 characters.
        """
        key = hashlib.sha256(f"{self.state_dir.resolve()}\0{submission_id}".encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"guanaco-{key}"

    def log_path(self, submission_id: str) -> Path:
        """Where the server of a submission writes its log."""
        return server_log_path(self.state_dir, submission_id)

    def _read_state(self, submission_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path(submission_id).read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, submission_id: str, state: dict[str, Any]) -> None:
        write_json_atomically(self.state_path(submission_id), state)

    @contextlib.contextmanager
    def _locked(self, submission_id: str) -> Iterator[None]:
        """Serialize deploy/teardown of one submission across processes."""
        with self._file_lock(f"{file_stem(submission_id)}.lock"):
            yield

    @contextlib.contextmanager
    def _file_lock(self, name: str) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / name, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # Liveness ------------------------------------------------------------------------------------------

    def _alive(self, state: dict[str, Any]) -> bool:
        child = self._children.get(state["pid"])
        if child is not None and child.poll() is not None:
            return False
        return process_start_ticks(state["pid"]) == state.get("pid_start_ticks")

    def _lasting(self, state: dict[str, Any]) -> bool:
        """Alive, and not about to exit because the process it watches (an old platform) is gone."""
        watch_pid = state.get("watch_pid")
        watched_alive = watch_pid is None or process_start_ticks(watch_pid) == state.get(
            "watch_pid_start_ticks"
        )
        return watched_alive and self._alive(state)

    @staticmethod
    def _same_server(state: dict[str, Any], spec: DeploymentSpec) -> bool:
        """Does the recorded server serve what `spec` asks for?"""
        return (state.get("artifact_uri"), state.get("served_model_name")) == (
            spec.artifact_uri,
            spec.served_model_name,
        )

    def _healthy(self, state: dict[str, Any]) -> bool:
        try:
            return httpx.get(f"http://{HOST}:{state['port']}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _deployment(self, state: dict[str, Any]) -> Deployment:
        details = {
            key: state.get(key)
            for key in (
                "pid",
                "port",
                "artifact_uri",
                "served_model_name",
                "started_at",
                "log_path",
                "cpu_cores",
                "max_model_len",
                "kv_cache_tokens",
                "kv_cache_gib",
            )
        }
        return Deployment(
            submission_id=state["submission_id"],
            endpoint_url=state["endpoint_url"],
            startup_s=state.get("startup_s") or 0.0,
            details=details,
        )

    # Deployer ------------------------------------------------------------------------------------------

    def get(self, submission_id: str) -> Deployment | None:
        """The running, healthy deployment of `submission_id`, else None (also when it is about to exit)."""
        state = self._read_state(submission_id)
        if state is None or not self._lasting(state) or not self._healthy(state):
            return None
        return self._deployment(state)

    def list_submission_ids(self) -> list[str]:
        """Submissions with a server record in `state_dir` (the spare serves none)."""
        ids = []
        for path in sorted(self.state_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                ids.append(json.loads(path.read_text())["submission_id"])
        return sorted(set(ids) - {SPARE_ID})

    def teardown_all(self) -> int:
        """Stop every recorded server, and the spare; return how many submissions' servers were stopped."""
        self.teardown(SPARE_ID)
        return super().teardown_all()

    def deploy(self, spec: DeploymentSpec) -> Deployment:
        """Start `inference.serve` for `spec` and wait until it answers; reuse a healthy running server, or
        hand the artifact to the server `prestart` started (or to the spare, see `keep_spare`)."""
        with self._locked(spec.submission_id):
            state = self._running_for(spec)
            if state is None and self._adopt_spare(spec.submission_id):
                state = self._running_for(spec)  # names the artifact to the adopted spare
            if state is not None and state.get("startup_s") and self._healthy(state):
                return self._with_memory(self._deployment(state))
            # Started by an earlier call that did not finish waiting, or prestarted: wait for it now.
            deployment = self._with_memory(self._wait_until_ready(spec, state or self._start(spec)))
        # The next submission finds a server already imported (off this one's critical path).
        self.ensure_spare()
        return deployment

    def launch(self, spec: DeploymentSpec) -> None:
        """Start the server for `spec` without waiting; `deploy` (which waits) or `get` tell when it is up.

        Does nothing when a server for the same artifact and name is already recorded and alive.
        """
        with self._locked(spec.submission_id):
            if self._running_for(spec) is None:
                self._start(spec)

    def prestart(self, submission_id: str) -> bool:
        """Start the submission's server before its artifact exists: vLLM imports while the weights are
        downloaded, checked, tensorized and uploaded; `deploy` then names the artifact. The server exits
        by itself if no artifact is named within `prestart_timeout_s`, and `teardown` stops it like any
        other. False (nothing started) when the submission already has a live server."""
        with self._locked(submission_id):
            if self._lasting_record(submission_id):
                return False
            if not self._adopt_spare(submission_id):
                self._start_server(submission_id, None)
            return True

    def ensure_spare(self) -> bool:
        """With `keep_spare`, start a spare server (vLLM imported, waiting for a model) unless one is up;
        True when one was started. Called when the platform starts and after each deployment."""
        if not self.keep_spare:
            return False
        with self._locked(SPARE_ID):
            if self._lasting_record(SPARE_ID):
                return False
            # Its own folder for each spare: the one it replaces may still wait for its artifact there.
            self._start_server(SPARE_ID, None, work_key=f"{SPARE_ID}-{secrets.token_hex(4)}")
            return True

    def spare_warm(self) -> bool:
        """Is a spare server imported and waiting for a model (not just starting)?"""
        state = self._read_state(SPARE_ID)
        return (
            state is not None
            and self._lasting(state)
            and WAITING_LINE in log_tail(Path(state["log_path"]), lines=LOG_TAIL_LINES)
        )

    def _lasting_record(self, record_id: str) -> bool:
        """Does `record_id` (a submission, or the spare) have a lasting server? A dead one's record and
        folder are removed. Call under its lock."""
        state = self._read_state(record_id)
        if state is not None and self._lasting(state):
            return True
        if state is not None:
            self._stop(state)
        return False

    def _adopt_spare(self, submission_id: str) -> bool:
        """Make the waiting spare the submission's server (record and log renamed); False when none waits."""
        with self._locked(SPARE_ID):
            spare = self._read_state(SPARE_ID)
            if spare is None or not self._lasting(spare) or spare.get("artifact_uri") is not None:
                return False
            log_path = self.log_path(submission_id)
            with contextlib.suppress(OSError):  # the server keeps writing to the renamed file
                Path(spare["log_path"]).replace(log_path)
            spare.update(submission_id=submission_id, log_path=str(log_path), adopted=True)
            self._write_state(submission_id, spare)
            self.state_path(SPARE_ID).unlink(missing_ok=True)
            return True

    def _running_for(self, spec: DeploymentSpec) -> dict[str, Any] | None:
        """The submission's live server record if it serves `spec` (naming the artifact to a prestarted
        one); any other recorded server is stopped. Call under the submission's lock."""
        state = self._read_state(spec.submission_id)
        if state is None:
            return None
        if self._lasting(state):
            if state.get("artifact_uri") is None:
                return self._name_artifact(state, spec)
            if self._same_server(state, spec):
                return state
        self._stop(state)
        return None

    def teardown(self, submission_id: str) -> bool:
        """Stop the submission's server group and remove its record; False when none was recorded."""
        with self._locked(submission_id):
            state = self._read_state(submission_id)
            if state is None:
                return False
            self._stop(state)
            return True

    def last_log_lines(self, submission_id: str) -> str:
        """The end of the submission's server log (kept after the server died, until it is restarted)."""
        return log_tail(self.log_path(submission_id))

    def memory(self, submission_id: str) -> dict[str, float | int] | None:
        """RSS and PSS (MiB) of the submission's server process tree now; None when it is not running."""
        state = self._read_state(submission_id)
        if state is None or not self._alive(state):
            return None
        return processes_memory(process_tree(state["pid"])).to_dict()

    def _with_memory(self, deployment: Deployment) -> Deployment:
        deployment.details["memory"] = self.memory(deployment.submission_id)
        return deployment

    # Internals -----------------------------------------------------------------------------------------

    def served_max_model_len(self, spec: DeploymentSpec) -> int:
        """The context length to serve: the model's own limit where it is shorter (vLLM refuses a longer
        one), else the platform's."""
        return min(spec.max_model_len or self.max_model_len, self.max_model_len)

    def kv_cache_tokens(self, spec: DeploymentSpec) -> int | None:
        """Tokens the server's KV cache holds: `kv_cache_sequences` sequences of the served context length;
        None when a fixed size (`kv_cache_gib`) is configured."""
        if self.kv_cache_gib is not None:
            return None
        return self.served_max_model_len(spec) * self.kv_cache_sequences

    def kv_cache_option(self, spec: DeploymentSpec) -> list[str]:
        """The server's KV cache option (the server turns tokens into bytes from the model's config)."""
        tokens = self.kv_cache_tokens(spec)
        if tokens is None:
            return ["--kv-cache-gib", str(self.kv_cache_gib)]
        return ["--kv-cache-tokens", str(tokens)]

    def serve_command(self, spec: DeploymentSpec, port: int) -> list[str]:
        """The argv of the model server process for `spec`."""
        return [
            *self._server_command(spec.submission_id, port),
            "--artifact-uri",
            spec.artifact_uri,
            "--served-model-name",
            spec.served_model_name,
            *self.kv_cache_option(spec),
            "--max-model-len",
            str(self.served_max_model_len(spec)),
        ]

    def prestart_command(self, work_key: str, port: int) -> list[str]:
        """A prestarted server's argv: it imports vLLM, then waits until `artifact_file` names its model."""
        fixed_cache = ["--kv-cache-gib", str(self.kv_cache_gib)] if self.kv_cache_gib is not None else []
        return [
            *self._server_command(work_key, port),
            "--artifact-from",
            str(self.artifact_file(work_key)),
            "--await-artifact-s",
            # A spare waits as long as the platform runs; a prestarted server only as long as an intake.
            str(SPARE_AWAIT_S if work_key.startswith(SPARE_ID) else self.prestart_timeout_s),
            *fixed_cache,
        ]

    def artifact_options(self, spec: DeploymentSpec) -> dict[str, Any]:
        """What a prestarted server learns once the artifact exists (`inference.serve --artifact-from`)."""
        # The record's model fields, less a KV cache token count the deployer leaves to a fixed size.
        return {key: value for key, value in self._spec_state(spec).items() if value is not None}

    def artifact_file(self, work_key: str) -> Path:
        """Where the deployer names the artifact to the server it prestarted (`work_key`: the submission
        id, or the spare's own key)."""
        return self.work_path(work_key) / "artifact.json"

    def _server_command(self, work_key: str, port: int) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "inference.serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--dtype",
            self.dtype,
            *(["--uni-executor"] if self.uni_executor else []),
        ]
        work_dir = self.work_path(work_key)
        work_dir.mkdir(parents=True, exist_ok=True)
        command += ["--work-dir", str(work_dir)]
        if self.platform_pid is not None:
            command += ["--watch-pid", str(self.platform_pid)]
        return command

    def server_environment(self, cores: list[int] | None = None) -> dict[str, str]:
        """The environment a model server starts with: an allow-list plus S3 read credentials."""
        extra = dict(self.extra_env)
        if cores:
            extra.setdefault("VLLM_CPU_OMP_THREADS_BIND", omp_threads_bind(cores))
        if "VLLM_CACHE_ROOT" not in os.environ:
            # Kept under the platform's home: a cold model-info cache costs a subprocess per start.
            extra.setdefault("VLLM_CACHE_ROOT", str(self.vllm_cache_dir))
        return model_server_environment(
            os.environ,
            self.s3_endpoint_url,
            self.s3_read_access_key,
            self.s3_read_secret_key,
            self.s3_region,
            extra=extra,
        )

    def _cores_in_use(self) -> list[list[int]]:
        """The cores of every recorded server that is still running."""
        in_use = []
        for path in self.state_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                state = json.loads(path.read_text())
                if state.get("cpu_cores") and self._alive(state):
                    in_use.append(state["cpu_cores"])
        return in_use

    def _start(self, spec: DeploymentSpec) -> dict[str, Any]:
        return self._start_server(spec.submission_id, spec)

    def _start_server(
        self, submission_id: str, spec: DeploymentSpec | None, work_key: str | None = None
    ) -> dict[str, Any]:
        """Start the server of `spec`, or (spec None) a prestarted one that waits for its artifact."""
        # One lock for the whole folder (not named like a `<submission>.lock`): two deploys at once must
        # not both pick the idle core.
        with self._file_lock("cpu-cores.flock"):
            cores = None
            if self.cores_per_server:
                cores = choose_cores(available_cores(), self._cores_in_use(), self.cores_per_server)
            return self._spawn(submission_id, spec, cores, work_key or submission_id)

    def _spawn(
        self, submission_id: str, spec: DeploymentSpec | None, cores: list[int] | None, work_key: str
    ) -> dict[str, Any]:
        port = free_port()
        log_path = self.log_path(submission_id)
        env = self.server_environment(cores)
        self.artifact_file(work_key).unlink(missing_ok=True)
        command = self.serve_command(spec, port) if spec else self.prestart_command(work_key, port)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: it survives the run process that deployed it and gets its own group.
                start_new_session=True,
                # A fixed working directory: the server must not depend on where the deployer runs.
                cwd=self.state_dir,
            )
        self._children[process.pid] = process
        state = {
            "submission_id": submission_id,
            "pid": process.pid,
            "pid_start_ticks": process_start_ticks(process.pid),
            "port": port,
            "endpoint_url": f"http://{HOST}:{port}/v1",
            "artifact_uri": None,
            "served_model_name": None,
            "started_at": datetime.now(UTC).isoformat(),
            "started_monotonic": time.monotonic(),
            "log_path": str(log_path),
            "work_key": work_key,
            "startup_s": None,
            "cpu_cores": cores,
            "kv_cache_gib": self.kv_cache_gib,
            "watch_pid": self.platform_pid,
            "watch_pid_start_ticks": process_start_ticks(self.platform_pid) if self.platform_pid else None,
        }
        if spec is not None:
            state.update(self._spec_state(spec))
        self._write_state(submission_id, state)
        return state

    def _spec_state(self, spec: DeploymentSpec) -> dict[str, Any]:
        """The parts of a server record that say which model it serves."""
        return {
            "artifact_uri": spec.artifact_uri,
            "served_model_name": spec.served_model_name,
            "max_model_len": self.served_max_model_len(spec),
            "kv_cache_tokens": self.kv_cache_tokens(spec),
        }

    def _name_artifact(self, state: dict[str, Any], spec: DeploymentSpec) -> dict[str, Any]:
        """Tell a prestarted server which artifact to serve (an atomic write: it polls for the file)."""
        write_json_atomically(
            self.artifact_file(state.get("work_key", spec.submission_id)), self.artifact_options(spec)
        )
        state.update(self._spec_state(spec), named_monotonic=time.monotonic())
        self._write_state(spec.submission_id, state)
        return state

    def _stop(self, state: dict[str, Any]) -> None:
        pid = state["pid"]
        if self._alive(state):
            stop_process_groups(server_process_groups(pid))
        child = self._children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self.state_path(state["submission_id"]).unlink(missing_ok=True)
        # A server killed outright cannot remove its own config folder: it lives here, so it goes too.
        shutil.rmtree(self.work_path(state.get("work_key", state["submission_id"])), ignore_errors=True)

    def _fail(self, state: dict[str, Any], what: str) -> DeploymentError:
        """Stop the server, then describe the failure with the reason found in its log."""
        self._stop(state)
        log_path = Path(state["log_path"])
        tail = strip_ansi(log_tail(log_path))
        reason = failure_reason(tail)
        return DeploymentError(
            f"inference server for {state['submission_id']!r} ({state['artifact_uri']}) {what}"
            + (f": {reason}" if reason else "")
            + f"\n--- last lines of {log_path} ---\n{tail}",
            cause=f"the model server {what}" + (f": {reason}" if reason else ""),
            log_tail=tail,
        )

    def _wait_until_ready(self, spec: DeploymentSpec, state: dict[str, Any]) -> Deployment:
        started = time.monotonic()
        deadline = started + self.startup_timeout_s
        while True:
            if not self._alive(state):
                child = self._children.get(state["pid"])
                code = child.returncode if child is not None else "unknown"
                raise self._fail(state, f"exited with code {code} during start-up")
            if self._healthy(state):
                break
            if time.monotonic() > deadline:
                raise self._fail(state, f"was not healthy after {self.startup_timeout_s:.0f} s")
            time.sleep(0.5)
        if self.smoke_test:
            problem = self._smoke_test(state)
            if problem:
                raise self._fail(state, f"is up but cannot generate ({problem})")
        # A prestarted server's start-up counts from when it was told its artifact: the rest overlapped.
        began = state.get("named_monotonic") or state.get("started_monotonic", started)
        state["startup_s"] = round(time.monotonic() - began, 3)
        self._write_state(spec.submission_id, state)
        return self._deployment(state)

    def _smoke_test(self, state: dict[str, Any]) -> str:
        """'' when a one-token completion succeeds, else what went wrong."""
        try:
            response = httpx.post(
                f"{state['endpoint_url']}/completions",
                json={"model": state["served_model_name"], "prompt": "Hello", "max_tokens": 1},
                timeout=60.0,
            )
        except httpx.HTTPError as error:
            return f"smoke completion failed: {error}"
        if response.status_code != 200:
            return f"smoke completion answered HTTP {response.status_code}: {response.text[:300]}"
        return ""
