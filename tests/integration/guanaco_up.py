"""`guanaco up` as a user runs it: a real process, its console output collected, stopped by a signal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from guanaco_dagster.ports import wait_until


def up_env(home: Path) -> dict[str, str]:
    """This environment without any GUANACO_ setting, with the platform home at `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANACO_")}
    env["GUANACO_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class GuanacoUp:
    """A running `guanaco up`; `lines` is what it printed so far."""

    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> GuanacoUp:
        """Start `argv` (a `guanaco up` command line) and collect its output."""
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        up = cls(process)
        up._reader = threading.Thread(target=lambda: up.lines.extend(process.stdout), daemon=True)
        up._reader.start()
        return up

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_announced(self, timeout_s: float = 180) -> None:
        """Wait for "Guanaco is up"; fail with its output if it exits first."""

        def announced() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"guanaco up exited early:\n{self.output}")
            return any("Guanaco is up" in line for line in self.lines)

        wait_until(announced, timeout_s=timeout_s, what="guanaco up")

    def stop(self, stop_signal: int = signal.SIGTERM) -> None:
        """Send `stop_signal` and wait for it to exit."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
        self.process.wait(timeout=120)
        if self._reader is not None:
            self._reader.join(timeout=10)


def still_running(pids: list[int]) -> list[int]:
    """Those of `pids` still alive, after giving grandchildren (Dagster's code servers) a moment to notice."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), timeout_s=15)
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]
