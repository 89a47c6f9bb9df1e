"""The platform's code server forks its run workers from a process that already imported the code location
and torch, and falls back to Dagster's own "spawn" where no forkserver can start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from guanaco_dagster.embedded.code_server import RUN_WORKER_PRELOAD

# A child started the way the code server starts a run worker reports which modules it began with.
PROBE = """
import json, sys
from guanaco_dagster.embedded.code_server import run_worker_context

def report(names, queue):
    queue.put({name: name in sys.modules for name in names})

if __name__ == "__main__":
    context = run_worker_context()
    queue = context.Queue()
    worker = context.Process(target=report, args=(sys.argv[1:], queue))
    worker.start()
    print(json.dumps({"method": context.get_start_method(), "loaded": queue.get(timeout=120)}))
    worker.join()
"""


def _probe(tmp_path, env_overrides: dict[str, str] | None = None) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, **(env_overrides or {})}
    result = subprocess.run(
        [sys.executable, str(script), *RUN_WORKER_PRELOAD],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_run_worker_starts_with_the_code_location_and_torch_already_imported(tmp_path):
    answer = _probe(tmp_path)

    assert answer["method"] == "forkserver"
    assert answer["loaded"] == dict.fromkeys(RUN_WORKER_PRELOAD, True)


def test_without_a_forkserver_run_workers_start_cold_but_start(tmp_path):
    # A temporary folder too long for a Unix socket's path: the forkserver cannot listen there.
    long_tmp = tmp_path / ("t" * 120)
    long_tmp.mkdir()

    answer = _probe(tmp_path, {"TMPDIR": str(long_tmp)})

    assert answer["method"] == "spawn"
    assert answer["loaded"]["dagster._grpc.impl"] is False
