"""How much memory a model server's processes hold: RSS and PSS summed over its process tree.

PSS (proportional set size) splits each shared page among the processes mapping it, so summing it over
servers gives what they cost the machine together; RSS counts shared pages (torch's libraries) in full.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcessMemory:
    """Memory of a group of processes, in MiB, and how many of them could be read."""

    rss_mib: float
    pss_mib: float
    processes: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _rollup_kib(pid: int) -> dict[str, int]:
    """The `Rss:` and `Pss:` lines of /proc/<pid>/smaps_rollup, in KiB ({} when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[name] = int(rest.split()[0])
    return values


def processes_memory(pids: Iterable[int]) -> ProcessMemory:
    """RSS and PSS summed over `pids` (processes that vanished meanwhile count for nothing)."""
    rollups = [rollup for rollup in map(_rollup_kib, pids) if rollup]
    return ProcessMemory(
        rss_mib=round(sum(r.get("Rss", 0) for r in rollups) * 1024 / MIB, 1),
        pss_mib=round(sum(r.get("Pss", 0) for r in rollups) * 1024 / MIB, 1),
        processes=len(rollups),
    )
