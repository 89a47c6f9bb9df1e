"""CLI start-up: `guanaco --help` against `hf --help` (huggingface_hub's typer CLI), in the same run.

Each sample is a fresh process started from the virtualenv's console scripts, timed from spawn to exit,
output discarded. One warm-up run of each first (page cache, bytecode), then the two commands alternate
(the order flips every round, so neither always runs right after the other). Alongside the times, each
command's count of imported modules (`python -X importtime`) shows what it loads. Target: guanaco's
median at most 1.0x hf's.

    python -m benchmarks.bench_cli_startup [--full] [--samples N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    console,
    fmt,
    fmt_ratio,
    machine_info,
    machine_line,
    parser,
    print_table,
    ratio,
    rounded,
    timed,
    write_results,
)

NAME = "cli_startup"
QUICK_SAMPLES, FULL_SAMPLES = 9, 25
TARGET_RATIO = 1.0
SCRIPTS_DIR = Path(sys.executable).parent
COMMANDS = {"guanaco --help": "guanaco", "hf --help": "hf"}
# A fixed width so both CLIs render the same amount of help; telemetry and update checks stay off.
ENVIRONMENT = {**os.environ, "COLUMNS": "100", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}


def script(name: str) -> Path:
    """The virtualenv's console script `name`; exits with a hint when it is not installed."""
    path = SCRIPTS_DIR / name
    if not path.exists():
        raise SystemExit(f"{name} is not installed in {SCRIPTS_DIR.name}/: run `make setup` first")
    return path


def run_once(name: str) -> float:
    """Seconds one fresh `NAME --help` process takes from spawn to exit."""
    completed, seconds = timed(
        lambda: subprocess.run(
            [str(script(name)), "--help"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENVIRONMENT,
            check=False,
        )
    )
    if completed.returncode != 0:
        raise SystemExit(f"`{name} --help` exited with {completed.returncode}")
    return seconds


def imported_module_count(name: str) -> int:
    """How many modules one `NAME --help` imports (lines of `python -X importtime`)."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", str(script(name)), "--help"],
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
        check=False,
    )
    return sum(1 for line in completed.stderr.splitlines() if line.startswith("import time:")) - 1


def sample(samples: int) -> dict[str, list[float]]:
    """`samples` timings of each command, alternating, after one warm-up run of each."""
    for name in COMMANDS.values():
        run_once(name)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS.values()}
    names = list(COMMANDS.values())
    for round_index in range(samples):
        for name in names if round_index % 2 == 0 else reversed(names):
            times[name].append(run_once(name))
    return times


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--samples", type=int, default=0, help="runs per command (at least 7); 0 = preset")
    args = arguments.parse_args()
    samples = max(7, args.samples or (FULL_SAMPLES if args.full else QUICK_SAMPLES))
    machine = machine_info()
    console.rule("[bold]Benchmark: CLI start-up")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    times = sample(samples)
    modules = {name: imported_module_count(name) for name in COMMANDS.values()}
    medians = {name: statistics.median(values) for name, values in times.items()}
    over_hf = ratio(medians["guanaco"], medians["hf"])
    print_table(
        f"CLI start-up, {samples} fresh processes each (alternating, after one warm-up)",
        ["command", "min s", "median s", "max s", "modules imported", "median ÷ hf"],
        [
            [
                label,
                fmt(min(times[name]), 3),
                fmt(medians[name], 3),
                fmt(max(times[name]), 3),
                modules[name],
                fmt_ratio(ratio(medians[name], medians["hf"])),
            ]
            for label, name in COMMANDS.items()
        ],
        caption=f"target: guanaco --help ≤ {TARGET_RATIO:.1f}× hf --help (ratio of medians)",
    )
    verdict = "[green]within target[/]" if over_hf is not None and over_hf <= TARGET_RATIO else "[red]over[/]"
    console.print(f"guanaco --help ÷ hf --help (medians): [bold]{fmt_ratio(over_hf)}[/] — {verdict}")
    results: dict[str, Any] = {
        "guanaco_help_median_s": medians["guanaco"],
        "hf_help_median_s": medians["hf"],
        "guanaco_over_hf_ratio": over_hf,
        "guanaco_help_min_s": min(times["guanaco"]),
        "hf_help_min_s": min(times["hf"]),
        "guanaco_over_hf_min_ratio": ratio(min(times["guanaco"]), min(times["hf"])),
        "guanaco_modules_imported": modules["guanaco"],
        "hf_modules_imported": modules["hf"],
        "target_ratio": TARGET_RATIO,
        "within_target": over_hf is not None and over_hf <= TARGET_RATIO,
        "samples_s": times,
    }
    settings = {"samples": samples, "warm_up_runs": 1, "columns": 100, "full": args.full}
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


if __name__ == "__main__":
    main()
