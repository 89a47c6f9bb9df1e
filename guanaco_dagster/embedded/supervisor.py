"""Restart the platform's crashed children (daemon, webserver, service, S3) with exponential backoff.

One thread polls every child; a child that exited is restarted after 1, 2, 4 … 30 s (the count starts
again once it has stayed up a minute), and each restart is reported with the exit code and the tail of the
child's log. It never gives up: only stopping the platform stops it.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from guanaco_dagster.deployment.local_process import log_tail

LOG_TAIL_LINES = 20
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class SupervisedChild:
    """A child the supervisor keeps running: how to (re)start it and how to tell that it exited."""

    name: str
    restart: Callable[[], None]
    exit_code: Callable[[], int | None]  # None while it runs
    log_path: Path


def describe_exit(code: int) -> str:
    """'code 1', or 'code -9 (SIGKILL)' for a child killed by a signal."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"code {code} ({signal.Signals(-code).name})"
    return f"code {code}"


def readable_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` non-blank lines of a log, without terminal colour codes."""
    text = ANSI_ESCAPE.sub("", log_tail(path, lines * 4))
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def backoff_s(attempt: int, base_s: float = 1.0, max_s: float = 30.0) -> float:
    """The wait before restart number `attempt` (1, 2, 3 …): base · 2^(attempt−1), at most `max_s`."""
    return min(max_s, base_s * 2 ** (attempt - 1))


class Supervisor:
    """Watch `children` in a background thread and restart any that exits, until `stop()`."""

    def __init__(
        self,
        children: list[SupervisedChild],
        report: Callable[[str], None],
        poll_s: float = 0.5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        stable_after_s: float = 60.0,
    ) -> None:
        self.children = {child.name: child for child in children}
        self.report = report
        self.poll_s = poll_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.restarts: Counter[str] = Counter()
        self._attempts: Counter[str] = Counter()
        self._started_at = {name: time.monotonic() for name in self.children}
        self._restart_at: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guanaco-supervisor", daemon=True)

    def start(self) -> Supervisor:
        """Begin watching (the children must already be running)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching; restarts in progress finish first."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def running(self) -> bool:
        """Whether the supervisor thread is watching."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            for child in self.children.values():
                if self._stopping.is_set():
                    return
                self._check(child)

    def _check(self, child: SupervisedChild) -> None:
        now = time.monotonic()
        if child.name in self._restart_at:
            if now >= self._restart_at[child.name]:
                self._restart(child)
            return
        code = child.exit_code()
        if code is None:
            return
        if now - self._started_at[child.name] >= self.stable_after_s:
            self._attempts[child.name] = 0
        self._attempts[child.name] += 1
        delay_s = backoff_s(self._attempts[child.name], self.backoff_base_s, self.backoff_max_s)
        self._restart_at[child.name] = now + delay_s
        tail = readable_tail(child.log_path)
        self.report(
            f"the platform's {child.name} exited with {describe_exit(code)}; restarting it in "
            f"{delay_s:.0f} s (attempt {self._attempts[child.name]}). "
            f"Last lines of its log ({child.log_path.name}):\n{tail}"
        )

    def _restart(self, child: SupervisedChild) -> None:
        del self._restart_at[child.name]
        self._started_at[child.name] = time.monotonic()
        try:
            child.restart()
        except Exception as error:  # noqa: BLE001 - a failed start is retried like a crash
            self.report(f"the platform's {child.name} could not be restarted ({error}); trying again")
            return
        self.restarts[child.name] += 1
        self.report(f"the platform's {child.name} is running again (restart {self.restarts[child.name]})")
