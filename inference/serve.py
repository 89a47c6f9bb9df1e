"""Serve a Guanaco artifact: download its config and tokenizer, then run vLLM's OpenAI server.

    python -m inference.serve --artifact-uri s3://bucket/models/<sha>/ --host 127.0.0.1 --port 8000 \\
        --served-model-name my-model [--dtype float32] [--kv-cache-gib 1] [--max-model-len 2048] \\
        [--watch-pid PID]

The weights stream from S3 straight into vLLM through tensorizer. S3 endpoint and credentials come from
AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION. vLLM runs as a
child in its own process group; this process forwards SIGTERM/SIGINT to that group, stops it when the
watched pid disappears, and removes its temporary folder on the way out. Health: vLLM's `/health`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from inference.artifact import ArtifactError, download_model_files, normalize_artifact_uri, weights_uri

logger = logging.getLogger("guanaco.serve")

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
STOP_GRACE_S = 10.0
EXIT_ARTIFACT_ERROR = 2
_PR_SET_PDEATHSIG = 1


def build_vllm_command(
    model_dir: Path,
    tensorizer_uri: str,
    host: str,
    port: int,
    served_model_name: str,
    dtype: str = "float32",
    max_model_len: int = 2048,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
    enforce_eager: bool = True,
) -> list[str]:
    """The argv that runs vLLM's OpenAI server on a local config folder with tensorizer weights."""
    return [
        python,
        "-m",
        VLLM_SERVER_MODULE,
        "--model",
        str(model_dir),
        "--served-model-name",
        served_model_name,
        "--host",
        host,
        "--port",
        str(port),
        "--load-format",
        "tensorizer",
        "--model-loader-extra-config",
        json.dumps({"tensorizer_uri": tensorizer_uri}),
        "--dtype",
        dtype,
        "--max-model-len",
        str(max_model_len),
        # torch.compile adds 35-80 s to start-up on CPU and buys no speed there; GPUs want CUDA graphs.
        *(["--enforce-eager"] if enforce_eager else []),
        *extra_args,
    ]


def build_vllm_env(
    base_env: Mapping[str, str], kv_cache_gib: int, tmp_dir: Path | None = None
) -> dict[str, str]:
    """vLLM's environment: a bounded CPU KV cache (else it takes ~92% of RAM) and nothing phoning home."""
    env = dict(base_env)
    if tmp_dir is not None:
        # vLLM leaves its torch.distributed rendezvous files (vllm_dist_*) in the temp folder.
        env["TMPDIR"] = str(tmp_dir)
    env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    # Config and tokenizer are local: never let transformers reach for the Hub.
    env["HF_HUB_OFFLINE"] = "1"
    return env


def make_s3_client_from_env():  # noqa: ANN201 - boto3 clients have no public type
    """A boto3 S3 client configured from the AWS_* environment (endpoint via AWS_ENDPOINT_URL_S3)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
    )


def _process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (to tell it from a later process reusing the pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has exited; it only waits to be reaped
        return None
    return int(fields[19])


class PidWatch:
    """Is the process we were started for still alive (the same process, not a reused pid)?"""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start_ticks = _process_start_ticks(pid)

    def alive(self) -> bool:
        """False once the watched process has exited (or was never there)."""
        if self.start_ticks is None:
            return False
        return _process_start_ticks(self.pid) == self.start_ticks


def _die_with_parent() -> None:
    """In the vLLM child before exec: SIGTERM it if this supervisor dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM the child's process group, SIGKILL what is left after `grace_s`; return its exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        logger.warning("vLLM did not stop within %.0f s; killing its process group", grace_s)
    # Engine and worker processes share the group: make sure none of them lingers.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def supervise(
    command: Sequence[str], env: Mapping[str, str], watch: PidWatch | None, poll_s: float = 0.5
) -> int:
    """Run `command` in its own process group until it exits, we are signalled, or `watch` dies."""
    stop_requested = threading.Event()
    reason: list[str] = []

    def request_stop(signum: int, _frame: object) -> None:
        reason.append(signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        process = subprocess.Popen(
            list(command), env=dict(env), start_new_session=True, preexec_fn=_die_with_parent
        )
        logger.info("started vLLM (pid %d)", process.pid)
        while process.poll() is None:
            if watch is not None and not watch.alive():
                reason.append(f"watched pid {watch.pid} exited")
                stop_requested.set()
            if stop_requested.wait(poll_s):
                logger.info("stopping vLLM: %s", reason[0] if reason else "requested")
                stop_process_group(process)
                return 0
        code = process.returncode
        logger.info("vLLM exited with code %s", code)
        # Its engine processes may outlive the API server that crashed; never leave them behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return code if code is not None else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the model server."""
    parser = argparse.ArgumentParser(prog="python -m inference.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-uri", required=True, help="s3://bucket/models/<sha256>/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--kv-cache-gib", type=int, default=1, help="CPU KV cache size (GiB)")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--watch-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--work-dir", type=Path, default=None, help="parent of the temporary config folder")
    parser.add_argument(
        "--eager",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run vLLM with --enforce-eager (right on CPU; use --no-eager on GPUs for CUDA graphs)",
    )
    parser.add_argument("vllm_args", nargs="*", help="further vLLM arguments, after `--`")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Download the artifact's config files, then run and supervise vLLM; return its exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s guanaco-serve %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    args = parse_args(argv)
    watch = PidWatch(args.watch_pid) if args.watch_pid else None
    if watch is not None and not watch.alive():
        logger.error("watched pid %d is not running; not starting", args.watch_pid)
        return 1
    artifact_uri = normalize_artifact_uri(args.artifact_uri)
    # Until vLLM runs, a stop request just exits (through the `finally` that removes the temp folder).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_on_signal)
    work_dir = Path(tempfile.mkdtemp(prefix="guanaco-serve-", dir=args.work_dir))
    model_dir, vllm_tmp_dir = work_dir / "model", work_dir / "tmp"
    vllm_tmp_dir.mkdir()
    try:
        try:
            files = download_model_files(artifact_uri, model_dir, make_s3_client_from_env())
        except ArtifactError as error:
            logger.error("%s", error)
            return EXIT_ARTIFACT_ERROR
        except Exception as error:  # botocore errors: endpoint down, bad credentials, missing bucket
            logger.error("cannot read artifact %s from S3: %s", artifact_uri, error)
            return EXIT_ARTIFACT_ERROR
        logger.info("downloaded %d config/tokenizer files of %s to %s", len(files), artifact_uri, model_dir)
        if watch is not None and not watch.alive():
            logger.info("watched pid %d exited during the download; not starting vLLM", watch.pid)
            return 0
        command = build_vllm_command(
            model_dir,
            weights_uri(artifact_uri),
            args.host,
            args.port,
            args.served_model_name,
            dtype=args.dtype,
            max_model_len=args.max_model_len,
            extra_args=args.vllm_args,
            enforce_eager=args.eager,
        )
        return supervise(command, build_vllm_env(os.environ, args.kv_cache_gib, vllm_tmp_dir), watch)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
