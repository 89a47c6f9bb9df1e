"""Serve a Guanaco artifact: download its config and tokenizer, then run vLLM's OpenAI server.

    python -m inference.serve --artifact-uri s3://bucket/models/<sha>/ --host 127.0.0.1 --port 8000 \\
        --served-model-name my-model [--dtype float32] [--kv-cache-gib 1 | --kv-cache-tokens 16384] \\
        [--max-model-len 2048] [--uni-executor] [--watch-pid PID]
    python -m inference.serve --artifact-from FILE --port 8000 ...   # prestarted: the artifact comes later

vLLM starts importing at once (`inference.warm_vllm`), while the config files download, so the imports
overlap the download. With `--artifact-from` they overlap whatever else the platform does first: the
server waits (at most `--await-artifact-s`) for FILE, a JSON object of the options that name the artifact
(`artifact_uri`, `served_model_name`, `max_model_len`, `kv_cache_tokens`), then serves it.

The weights stream from S3 straight into vLLM through tensorizer. S3 endpoint and credentials come from
AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION. vLLM runs as a
child in its own process group; this process forwards SIGTERM/SIGINT to that group, stops it when the
watched pid disappears, and removes its temporary folder on the way out. Health: vLLM's `/health`.

`--kv-cache-tokens` sizes the KV cache from the model's own config (layers × KV heads × head size × dtype)
instead of a flat `--kv-cache-gib`; `--uni-executor` runs the model inside vLLM's engine process (no
separate worker process: one process start and one torch import fewer).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inference.artifact import ArtifactError, download_model_files, normalize_artifact_uri, weights_uri
from inference.warm_vllm import VLLM_SERVER_MODULE

logger = logging.getLogger("guanaco.serve")

WARM_SERVER_MODULE = "inference.warm_vllm"
STOP_GRACE_S = 10.0
AWAIT_ARTIFACT_S = 900.0
# What an `--artifact-from` file may set: the options that depend on the model, not on the machine.
ARTIFACT_OPTIONS = ("artifact_uri", "served_model_name", "max_model_len", "kv_cache_tokens")
EXIT_ARTIFACT_ERROR = 2
_PR_SET_PDEATHSIG = 1


def build_vllm_command(*args: Any, python: str = sys.executable, **kwargs: Any) -> list[str]:
    """The argv that runs vLLM's OpenAI server as its own program (`build_vllm_args` tells the options)."""
    return [python, "-m", VLLM_SERVER_MODULE, *build_vllm_args(*args, **kwargs)]


def build_vllm_args(
    model_dir: Path,
    tensorizer_uri: str,
    host: str,
    port: int,
    served_model_name: str,
    dtype: str = "float32",
    max_model_len: int = 2048,
    extra_args: Sequence[str] = (),
    enforce_eager: bool = True,
    kv_cache_bytes: int | None = None,
    uni_executor: bool = False,
) -> list[str]:
    """vLLM OpenAI server options for a local config folder with tensorizer weights.

    `kv_cache_bytes`: an exact KV cache size (else the environment's `VLLM_CPU_KVCACHE_SPACE` bounds it on
    CPU, and GPUs keep vLLM's own sizing); `uni_executor`: no worker process (see `build_vllm_env`).
    """
    return [
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
        *(["--kv-cache-memory-bytes", str(kv_cache_bytes)] if kv_cache_bytes is not None else []),
        *(["--distributed-executor-backend", "uni"] if uni_executor else []),
        *extra_args,
    ]


def omp_binding_env(cores: str) -> dict[str, str]:
    """OpenMP settings that bind the model's threads to `cores` (a `VLLM_CPU_OMP_THREADS_BIND` list such
    as "0,1" or "2-3"), as vLLM's multiprocessing executor sets them for its worker process; the `uni`
    executor never reads that variable. {} for vLLM's "auto"/"nobind" or a multi-rank list."""
    if not cores or cores in ("auto", "nobind") or "|" in cores:
        return {}
    ids: list[str] = []
    for part in cores.split(","):
        first, _, last = part.partition("-")
        ids += [str(core) for core in range(int(first), int(last or first) + 1)]
    return {
        "OMP_NUM_THREADS": str(len(ids)),
        "OMP_PLACES": "{" + ",".join(ids) + "}",
        "OMP_PROC_BIND": "true",
    }


def build_vllm_env(
    base_env: Mapping[str, str],
    kv_cache_gib: int | None,
    tmp_dir: Path | None = None,
    uni_executor: bool = False,
) -> dict[str, str]:
    """vLLM's environment: a bounded CPU KV cache (else it takes ~92% of RAM) and nothing phoning home.

    `kv_cache_gib` None: the command line sizes the cache (`--kv-cache-memory-bytes`), and the variable,
    which vLLM's CPU platform would let override it, is removed. `uni_executor`: vLLM's CPU platform turns
    the `uni` executor back into `mp` unless `VLLM_ENABLE_V1_MULTIPROCESSING=0`; the API server still runs
    its engine in a process of its own, which then hosts the model itself.
    """
    env = dict(base_env)
    if tmp_dir is not None:
        # vLLM leaves its torch.distributed rendezvous files (vllm_dist_*) in the temp folder.
        env["TMPDIR"] = str(tmp_dir)
    if kv_cache_gib is None:
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    else:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    if uni_executor:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        env.update(omp_binding_env(env.get("VLLM_CPU_OMP_THREADS_BIND", "")))
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    # Config and tokenizer are local: never let transformers reach for the Hub.
    env["HF_HUB_OFFLINE"] = "1"
    return env


# Bytes per element of the dtypes a KV cache is kept in (vLLM keeps it in the model's dtype by default).
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2}
# vLLM's CPU backend allocates the cache in blocks of this many tokens.
KV_BLOCK_TOKENS = 128


def kv_cache_bytes(config: Mapping[str, object], tokens: int, dtype: str) -> int | None:
    """Bytes of a KV cache holding `tokens` tokens of the model `config` (config.json) describes.

    Keys and values of every layer: 2 × layers × KV heads × head size × bytes per element, for `tokens`
    rounded up to whole blocks. None when the config does not say (an unusual architecture): the caller
    then falls back to a fixed size.
    """
    text_config = config.get("text_config")
    text = text_config if isinstance(text_config, Mapping) else config
    layers, heads = text.get("num_hidden_layers"), text.get("num_attention_heads")
    hidden = text.get("hidden_size")
    if not all(isinstance(value, int) and value > 0 for value in (layers, heads)):
        return None
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or (hidden // heads if isinstance(hidden, int) else None)
    if dtype == "auto":
        dtype = str(text.get("dtype") or text.get("torch_dtype") or config.get("torch_dtype") or "float16")
    element = _DTYPE_BYTES.get(dtype)
    if not (isinstance(kv_heads, int) and isinstance(head_dim, int) and head_dim > 0 and element):
        return None
    blocks = math.ceil(tokens / KV_BLOCK_TOKENS)
    return blocks * KV_BLOCK_TOKENS * 2 * layers * kv_heads * head_dim * element


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


# The request a warm vLLM process waits for (`inference.warm_vllm`): its argv and environment additions.
VllmRequest = dict[str, Any]


def supervise(
    command: Sequence[str],
    env: Mapping[str, str],
    watch: PidWatch | None,
    next_request: Callable[[], VllmRequest | None],
    await_s: float = AWAIT_ARTIFACT_S,
    poll_s: float = 0.5,
) -> int:
    """Run the warm vLLM `command` in its own process group and hand it the request `next_request` returns
    (polled until it is not None, at most `await_s`); then run it until it exits, we are signalled, or
    `watch` dies. `next_request` raising ArtifactError stops everything with EXIT_ARTIFACT_ERROR."""
    stop_requested = threading.Event()
    reason: list[str] = []

    def request_stop(signum: int, _frame: object) -> None:
        reason.append(signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        logger.info("started vLLM (pid %d); it imports while the artifact is found", process.pid)
        awaiting_until = time.monotonic() + await_s
        while process.poll() is None:
            if process.stdin is not None:
                try:
                    request = next_request()
                except ArtifactError as error:
                    logger.error("%s", error)
                    stop_process_group(process)
                    return EXIT_ARTIFACT_ERROR
                if request is not None:
                    logger.info("vLLM arguments: %s", json.dumps(request["argv"]))
                    with contextlib.suppress(OSError):  # it died meanwhile: the loop sees its exit
                        process.stdin.write((json.dumps(request) + "\n").encode())
                        process.stdin.close()
                    process.stdin = None
                elif time.monotonic() > awaiting_until:
                    reason.append(f"no artifact came within {await_s:.0f} s")
                    stop_requested.set()
            if watch is not None and not watch.alive():
                reason.append(f"watched pid {watch.pid} exited")
                stop_requested.set()
            # Poll faster while the artifact is awaited: it is on the critical path.
            if stop_requested.wait(poll_s if process.stdin is None else min(poll_s, 0.05)):
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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--artifact-uri", help="s3://bucket/models/<sha256>/")
    source.add_argument(
        "--artifact-from",
        type=Path,
        help=f"prestart: wait for this JSON file to name the artifact (keys: {', '.join(ARTIFACT_OPTIONS)})",
    )
    parser.add_argument("--await-artifact-s", type=float, default=AWAIT_ARTIFACT_S)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None, help="required unless --artifact-from names it")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--kv-cache-gib", type=int, default=1, help="CPU KV cache size (GiB)")
    parser.add_argument(
        "--kv-cache-tokens",
        type=int,
        default=None,
        help="size the KV cache for this many tokens of the model (overrides --kv-cache-gib)",
    )
    parser.add_argument(
        "--uni-executor",
        action="store_true",
        help="run the model in vLLM's engine process: no separate worker process",
    )
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
    args = parser.parse_args(argv)
    if args.artifact_uri and not args.served_model_name:
        parser.error("--served-model-name is required with --artifact-uri")
    return args


def read_artifact_options(path: Path) -> dict[str, Any] | None:
    """The options an `--artifact-from` file sets; None while it does not exist yet."""
    try:
        options = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ArtifactError(f"cannot read the artifact file {path}: {error}") from error
    if not isinstance(options, dict) or not all(options.get(key) for key in ARTIFACT_OPTIONS[:2]):
        raise ArtifactError(f"artifact file {path} must name artifact_uri and served_model_name")
    unknown = set(options) - set(ARTIFACT_OPTIONS)
    if unknown:
        raise ArtifactError(f"artifact file {path} has unknown options: {', '.join(sorted(unknown))}")
    return options


def vllm_request(args: argparse.Namespace, model_dir: Path) -> VllmRequest:
    """Download the artifact's config files to `model_dir`; the warm vLLM's arguments for serving it."""
    artifact_uri = normalize_artifact_uri(args.artifact_uri)
    try:
        files = download_model_files(artifact_uri, model_dir, make_s3_client_from_env())
    except ArtifactError:
        raise
    except Exception as error:  # botocore errors: endpoint down, bad credentials, missing bucket
        raise ArtifactError(f"cannot read artifact {artifact_uri} from S3: {error}") from error
    logger.info("downloaded %d config/tokenizer files of %s to %s", len(files), artifact_uri, model_dir)
    cache_bytes, extra_env = None, {}
    if args.kv_cache_tokens is not None:
        cache_bytes = kv_cache_bytes(
            json.loads((model_dir / "config.json").read_text()), args.kv_cache_tokens, args.dtype
        )
        size = f"{cache_bytes / 2**20:.1f} MiB" if cache_bytes else f"{args.kv_cache_gib} GiB (unclear)"
        logger.info("KV cache for %d tokens: %s", args.kv_cache_tokens, size)
    if cache_bytes is None:
        # A fixed size (`--kv-cache-gib`, or a config that does not say): decided now, not at start, since a
        # prestarted server learns its model late; the engine takes the API server's environment.
        extra_env["VLLM_CPU_KVCACHE_SPACE"] = str(args.kv_cache_gib)
    argv = build_vllm_args(
        model_dir,
        weights_uri(artifact_uri),
        args.host,
        args.port,
        args.served_model_name,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        extra_args=args.vllm_args,
        enforce_eager=args.eager,
        kv_cache_bytes=cache_bytes,
        uni_executor=args.uni_executor,
    )
    return {"argv": argv, "env": extra_env}


def request_source(args: argparse.Namespace, model_dir: Path) -> Callable[[], VllmRequest | None]:
    """What `supervise` polls: the request at once (`--artifact-uri`), or once the artifact file names it."""

    def next_request() -> VllmRequest | None:
        if args.artifact_from is not None:
            options = read_artifact_options(args.artifact_from)
            if options is None:
                return None
            for key, value in options.items():
                setattr(args, key, value)
            logger.info("artifact named by %s: %s", args.artifact_from, args.artifact_uri)
        return vllm_request(args, model_dir)

    return next_request


def main(argv: Sequence[str] | None = None) -> int:
    """Start vLLM's imports, find the artifact's config files, then run and supervise vLLM; return its
    exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s guanaco-serve %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    args = parse_args(argv)
    watch = PidWatch(args.watch_pid) if args.watch_pid else None
    if watch is not None and not watch.alive():
        logger.error("watched pid %d is not running; not starting", args.watch_pid)
        return 1
    # Until vLLM runs, a stop request just exits (through the `finally` that removes the temp folder).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_on_signal)
    work_dir = Path(tempfile.mkdtemp(prefix="guanaco-serve-", dir=args.work_dir))
    model_dir, vllm_tmp_dir = work_dir / "model", work_dir / "tmp"
    vllm_tmp_dir.mkdir()
    try:
        # No KV cache size yet: the request sets it (`vllm_request`), once the model is known.
        env = build_vllm_env(os.environ, None, vllm_tmp_dir, args.uni_executor)
        if "OMP_PLACES" in env and args.uni_executor:
            # What vLLM logs for its worker process; with `uni` the engine process runs the model.
            cores = env["OMP_PLACES"].strip("{}").replace(",", ", ")
            logger.info("model threads bound by OpenMP: core ids=[%s]", cores)
        command = [sys.executable, "-m", WARM_SERVER_MODULE]
        return supervise(command, env, watch, request_source(args, model_dir), args.await_artifact_s)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
