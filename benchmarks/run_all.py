"""Run every benchmark, one process each, in a fixed order; print how long each took.

    python -m benchmarks.run_all [--full] [--only weight_loading,serving]

The quick preset (default) is what `make bench` runs: under 10 minutes on a 2-core machine. Each
benchmark writes its own `benchmarks/results/<name>.json`; this writes `results/run_all.json` with the
timings and then regenerates the README's tables from the JSON (`benchmarks.readme_tables`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.common import console, machine_info, machine_line, print_table, write_results

# Cheapest first: a failure in a platform benchmark should not hide the numbers of the others.
BENCHMARKS = (
    "cli_startup",
    "weight_scan",
    "arena",
    "feedback_categories",
    "weight_loading",
    "serving",
    "time_to_feedback",
    "service",
    "scale",
)
# Long runs that only `--full` includes (or `--only` names).
FULL_ONLY = ("capacity",)


def main() -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--full", action="store_true", help="larger presets (see benchmarks/README.md)")
    arguments.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    args = arguments.parse_args()
    every = (*BENCHMARKS, *FULL_ONLY)
    if args.only:
        chosen = [name for name in every if name in args.only.split(",")]
    else:
        chosen = list(every if args.full else BENCHMARKS)
    machine = machine_info()
    console.rule("[bold]Guanaco benchmarks")
    console.print(machine_line(machine))
    started = time.perf_counter()
    outcomes = []
    for name in chosen:
        command = [sys.executable, "-m", f"benchmarks.bench_{name}", *(["--full"] if args.full else [])]
        began = time.perf_counter()
        code = subprocess.call(command)
        outcomes.append(
            {"benchmark": name, "exit_code": code, "wall_s": round(time.perf_counter() - began, 1)}
        )
    total_s = time.perf_counter() - started
    print_table(
        f"Benchmarks run ({'full' if args.full else 'quick'} preset)",
        ["benchmark", "wall s", "result"],
        [
            [o["benchmark"], f"{o['wall_s']:.1f}", "ok" if o["exit_code"] == 0 else f"exit {o['exit_code']}"]
            for o in outcomes
        ]
        + [["total", f"{total_s:.1f}", ""]],
    )
    write_results("run_all", {"benchmarks": chosen, "full": args.full}, {"runs": outcomes}, machine, total_s)
    # The README's tables come from the JSON just written, never typed by hand.
    subprocess.call([sys.executable, "-m", "benchmarks.readme_tables"])
    return 0 if all(o["exit_code"] == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
