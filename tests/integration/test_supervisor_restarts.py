"""The supervisor restarts a killed or crashing child with growing pauses and says why, with its log."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from guanaco_dagster.embedded.supervisor import SupervisedChild, Supervisor
from guanaco_dagster.ports import wait_until


class ShellChild:
    """A real child process running `script`, restarted in place; its output goes to a log file."""

    def __init__(self, script: str, log_path: Path) -> None:
        self.script, self.log_path = script, log_path
        self.started_at: list[float] = []
        self.process = self.start()

    def start(self) -> subprocess.Popen:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(["sh", "-c", self.script], stdout=log, stderr=subprocess.STDOUT)
        self.started_at.append(time.monotonic())
        return self.process

    def supervised(self, name: str) -> SupervisedChild:
        return SupervisedChild(name, self.start, lambda: self.process.poll(), self.log_path)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def test_a_killed_child_is_restarted_and_the_report_names_the_signal_and_its_log(tmp_path: Path):
    child = ShellChild("echo serving requests; exec sleep 60", tmp_path / "child.log")
    reports: list[str] = []
    supervisor = Supervisor([child.supervised("service")], report=reports.append, poll_s=0.05).start()
    try:
        first = child.process.pid
        wait_until(
            lambda: "serving requests" in child.log_path.read_text(), timeout_s=10, what="the child's log"
        )
        os.kill(first, signal.SIGKILL)

        wait_until(lambda: supervisor.restarts["service"] == 1, timeout_s=10, what="the restart")

        assert child.process.pid != first and child.process.poll() is None
        assert "service exited with code -9 (SIGKILL)" in reports[0] and "serving requests" in reports[0]
        assert reports[1] == "the platform's service is running again (restart 1)"
    finally:
        supervisor.stop()
        child.stop()


def test_a_child_that_keeps_crashing_is_restarted_with_growing_pauses(tmp_path: Path):
    child = ShellChild("echo broken config; exit 3", tmp_path / "child.log")
    reports: list[str] = []
    supervisor = Supervisor(
        [child.supervised("daemon")], report=reports.append, poll_s=0.02, backoff_base_s=0.2
    ).start()
    try:
        wait_until(lambda: supervisor.restarts["daemon"] >= 3, timeout_s=20, what="three restarts")
    finally:
        supervisor.stop()
        child.stop()

    gaps = [later - earlier for earlier, later in zip(child.started_at, child.started_at[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8
    assert "daemon exited with code 3" in reports[0] and "broken config" in reports[0]
