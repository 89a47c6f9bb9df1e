"""vLLM's OpenAI server, imported before its arguments are known: the start-up that does not need the model.

    python -m inference.warm_vllm        # then one JSON line on stdin: {"argv": [...], "env": {...}}

Most of a CPU server's start-up is Python imports: the API server imports torch and vLLM, then spawns its
engine process, which imports them all over again. This process does both imports at once, before the
model exists: it starts a multiprocessing *forkserver* that preloads vLLM's engine modules (on a second
core) while it imports the API server itself, and inspects the most common model class
(`GUANACO_WARM_ARCHITECTURES`), which a cold vLLM cache would otherwise do in a subprocess once the model is
named. When the arguments arrive, the server runs exactly as `python -m vllm.entrypoints.openai.api_server
ARGS` would, except that its engine process is forked from the preloaded forkserver instead of spawned
from scratch. An empty stdin (the supervisor went away) exits.

The forkserver holds only imports (no threads, no accelerator initialised), which is what makes forking
from it safe. Its children start with the environment the API server has when it starts them, as spawned
ones would (vLLM's platform code sets variables in the API server that its engine reads).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import runpy
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger("guanaco.warm_vllm")

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# What an engine process imports before it loads a model (CPU and GPU workers alike import these).
ENGINE_MODULES = ("vllm.v1.engine.core", "vllm.v1.executor.uni_proc_executor")
# Model classes inspected while waiting (GUANACO_WARM_ARCHITECTURES, comma-separated): the most common family.
WARM_ARCHITECTURES = "LlamaForCausalLM"
# What its log says once imported, and once ready for a model (the deployer reads the latter).
IMPORTED_LINE = "vLLM imported"
WAITING_LINE = "warm and waiting for a model"
# Where vLLM asks for the multiprocessing context it starts its engine processes with.
ENGINE_LAUNCHER_MODULE = "vllm.v1.engine.utils"


def _run_in_environment(
    environment: Mapping[str, str], target: Callable[..., Any], args: tuple, kwargs: dict
) -> None:
    """In the forked engine process: take the starting process's environment, then run vLLM's target."""
    with contextlib.suppress(ImportError):
        import setproctitle

        # It finds the memory it writes titles into by walking the environment: before that is replaced.
        setproctitle.getproctitle()
    os.environ.clear()
    os.environ.update(environment)
    target(*args, **kwargs)


class ForkserverWithCallerEnvironment:
    """A forkserver multiprocessing context whose processes see the environment of the process that
    starts them (as spawned processes do), not the forkserver's from when it was started."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def Process(  # noqa: N802 - the multiprocessing context API
        self,
        group: None = None,
        target: Callable[..., Any] | None = None,
        name: str | None = None,
        args: tuple = (),
        kwargs: dict | None = None,
        *,
        daemon: bool | None = None,
    ) -> multiprocessing.process.BaseProcess:
        return self._context.Process(
            group=group,
            target=_run_in_environment,
            name=name,
            args=(dict(os.environ), target, tuple(args), dict(kwargs or {})),
            daemon=daemon,
        )


def start_engine_forkserver(modules: tuple[str, ...] = ENGINE_MODULES) -> multiprocessing.context.BaseContext:
    """Start the forkserver now, preloading `modules` in it (it imports them while we go on)."""
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(modules))
    forkserver.ensure_running()
    return context


def use_forkserver_for_engines(context: multiprocessing.context.BaseContext) -> bool:
    """Make vLLM start its engine processes from `context`; False when this vLLM has no such hook (it then
    spawns them as usual: slower, still correct)."""
    import importlib

    launcher = importlib.import_module(ENGINE_LAUNCHER_MODULE)
    if not callable(getattr(launcher, "get_mp_context", None)):
        logger.warning("%s has no get_mp_context: engine processes are spawned", ENGINE_LAUNCHER_MODULE)
        return False
    wrapped = ForkserverWithCallerEnvironment(context)
    launcher.get_mp_context = lambda: wrapped
    return True


def warm_model_infos(architectures: str) -> None:
    """Inspect the comma-separated model classes now (vLLM caches the result in this process and on disk):
    a cold cache otherwise costs an inspection subprocess after the model is named."""
    from inference.model_info_cache import warm_model_info_cache

    names = [name.strip() for name in architectures.split(",") if name.strip()]
    if names:
        started = time.perf_counter()
        unknown = warm_model_info_cache(names)
        logger.info("model info of %s ready in %.1f s", ", ".join(names), time.perf_counter() - started)
        if unknown:
            logger.warning("vLLM does not serve %s", ", ".join(unknown))


def read_request(stream: Any) -> dict[str, Any] | None:
    """The one request line: {"argv": [...vLLM server arguments], "env": {...additions}}; None at EOF."""
    line = stream.readline()
    if not line.strip():
        return None
    request = json.loads(line)
    if not isinstance(request.get("argv"), list):
        raise ValueError("warm vLLM request needs an 'argv' list")
    return request


def main() -> int:
    """Import everything, wait for the arguments on stdin, then run vLLM's OpenAI server."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s guanaco-warm %(levelname)s %(message)s")
    started = time.perf_counter()
    context = None
    if os.environ.get("GUANACO_ENGINE_FORKSERVER", "1") != "0":
        try:
            context = start_engine_forkserver()
        except OSError as error:  # e.g. a temp folder so deep that its socket path is too long
            logger.warning("no engine forkserver (%s): engine processes are spawned", error)
    __import__(VLLM_SERVER_MODULE)
    forked = context is not None and use_forkserver_for_engines(context)
    logger.info(
        IMPORTED_LINE + " in %.1f s; engine processes %s",
        time.perf_counter() - started,
        "fork from a preloaded forkserver" if forked else "are spawned",
    )
    warm_model_infos(os.environ.get("GUANACO_WARM_ARCHITECTURES", WARM_ARCHITECTURES))
    logger.info(WAITING_LINE)
    request = read_request(sys.stdin)
    if request is None:
        logger.info("no arguments came (stdin closed): exiting without serving")
        return 0
    os.environ.update({str(key): str(value) for key, value in (request.get("env") or {}).items()})
    sys.argv = [VLLM_SERVER_MODULE, *map(str, request["argv"])]
    # `__main__` stays this light module: forked engine processes re-import it, not the API server.
    runpy.run_module(VLLM_SERVER_MODULE, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
