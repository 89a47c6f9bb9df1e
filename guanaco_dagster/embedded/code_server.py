"""The embedded platform's code server: Dagster's own (`dagster api grpc`), with run workers that start warm.

Dagster's code server starts every run worker with multiprocessing's "spawn": a fresh interpreter that
imports Dagster and the code location again (~1.4 s on this 2-core machine before a run's first step),
and the pipeline's first tensorizer step then imports torch on top (~1.5 s). Here run workers are forked
from a forkserver that imported all of that once, so a run starts with it in memory (shared copy-on-write
between workers, too). The daemon and the webserver share this one server (workspace `grpc_server`).

`python -m guanaco_dagster.embedded.code_server --port P` takes the arguments of `dagster api grpc`
after `--port`; the location (guanaco_dagster.definitions) is added here.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys

# What a run worker needs before its first step: Dagster's run entry point, the code location, and the
# libraries of the tensorizing step (imported lazily by the code location, so the webserver stays light).
RUN_WORKER_PRELOAD = ["dagster._grpc.impl", "guanaco_dagster.definitions", "torch", "tensorizer"]
CODE_LOCATION_MODULE = "guanaco_dagster.definitions"
CODE_LOCATION_NAME = "guanaco"

logger = logging.getLogger(__name__)


def run_worker_context() -> multiprocessing.context.BaseContext:
    """A forkserver context with the run worker's imports preloaded, started now; "spawn" if it cannot start.

    The forkserver imports in the background: the first run waits for it only if it starts within seconds.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(RUN_WORKER_PRELOAD)
    try:
        from multiprocessing import forkserver

        forkserver.ensure_running()
    except OSError as error:  # e.g. a temporary folder whose path is too long for a Unix socket
        logger.warning("run workers start cold (spawn): the forkserver did not start: %s", error)
        return multiprocessing.get_context("spawn")
    return context


def main(argv: list[str]) -> None:
    from dagster._cli import main as dagster_main
    from dagster._grpc import server

    context = run_worker_context()

    class WarmRunWorkerApiServer(server.DagsterApiServer):
        """Dagster's gRPC API server whose run workers come from `context`."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            # The one place Dagster chooses how a run worker process starts (dagster/_grpc/server.py).
            self._mp_ctx = context

    # `dagster api grpc` looks the class up in its module when it builds the server.
    server.DagsterApiServer = WarmRunWorkerApiServer
    sys.argv = [
        "dagster",
        "api",
        "grpc",
        *("--module-name", CODE_LOCATION_MODULE, "--attribute", "defs"),
        *("--location-name", CODE_LOCATION_NAME),
        *argv,
    ]
    dagster_main()


if __name__ == "__main__":
    main(sys.argv[1:])
