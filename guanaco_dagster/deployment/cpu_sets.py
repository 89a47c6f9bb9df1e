"""Which CPU cores each local model server decodes on, so live models do not all share core 0.

vLLM on CPU binds its worker's OpenMP threads to the cores in `VLLM_CPU_OMP_THREADS_BIND`; left on "auto",
every server on a machine picks the same core. Servers are spread round-robin: each new one gets the
cores fewest running servers use.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence


def available_cores() -> list[int]:
    """The cores this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


def choose_cores(available: Sequence[int], in_use: Iterable[Sequence[int]], per_server: int) -> list[int]:
    """`per_server` cores for a new server: the least used by running servers, lower ids first on ties."""
    if not available:
        raise ValueError("no CPU cores are available to this process")
    load = Counter(core for cores in in_use for core in cores if core in available)
    ranked = sorted(available, key=lambda core: (load[core], available.index(core)))
    return sorted(ranked[: max(1, min(per_server, len(available)))])


def omp_threads_bind(cores: Sequence[int]) -> str:
    """The `VLLM_CPU_OMP_THREADS_BIND` value for one server on `cores` (e.g. "0,1")."""
    return ",".join(str(core) for core in cores)
