"""The README's benchmark tables, generated from `benchmarks/results/*.json` (never typed by hand).

    python -m benchmarks.readme_tables            # rewrite the generated blocks in README.md
    python -m benchmarks.readme_tables --check    # exit 1 if README.md differs from the JSON

README.md marks each block `<!-- bench:NAME -->` … `<!-- /bench:NAME -->`; NAME is a results file. A
block whose results file is missing says so instead of showing stale numbers. `make bench` regenerates
the blocks after the benchmarks ran; tests/unit/test_readme_benchmarks.py fails when they drift.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, RESULTS_DIR

README = REPO_ROOT / "README.md"
BLOCK = re.compile(r"(<!-- bench:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)
Renderer = Callable[[dict[str, Any]], str]


# Formatting -----------------------------------------------------------------------------------------


def num(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def spread(stats: dict[str, float] | None, digits: int = 1) -> str:
    """`median (min–max)` of a {min, median, max} summary."""
    if not stats:
        return "–"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(payload: dict[str, Any]) -> str:
    """Where and when the numbers were measured, and the command that printed them."""
    machine = payload["machine"]
    full = " --full" if payload.get("settings", {}).get("full") else ""
    return (
        f"<sub>`python -m benchmarks.bench_{payload['benchmark']}{full}` · {machine['date'][:10]} · "
        f"{machine['cores']} cores, load {machine['load_average_1m']} at start · "
        f"{payload['wall_s']:.0f} s</sub>"
    )


# One renderer per results file ----------------------------------------------------------------------


def _median_and_p95(stats: dict[str, float] | None) -> str:
    return "–" if not stats else f"{stats['median']:.1f}, {stats['p95']:.1f}"


def time_to_feedback(payload: dict[str, Any]) -> str:
    results = payload["results"]
    models = results["models"]
    labels = {
        "submit_to_first_stage_s": "`guanaco submit` → first asset step started",
        "submit_to_deployed_s": "→ deployed",
        "time_to_first_feedback_readable_s": "→ first feedback readable (`guanaco feedback`)",
        "time_to_first_feedback_summary_s": "→ first `feedback_summary` in Dagster",
        "deploying_s": "deploying stage (artifact named → healthy; the warm server imported vLLM before)",
        "plain_vllm_startup_s": "plain vLLM, same model and engine flags",
    }
    rows = [
        [label, *(spread(models[m]["summary"].get(key)) for m in models)] for key, label in labels.items()
    ]
    rows.insert(
        1,
        [
            "`guanaco submit` → first asset step started, p95",
            *(num(models[m]["summary"]["submit_to_first_stage_s"].get("p95"), 1) for m in models),
        ],
    )
    rows.insert(
        2,
        [
            "submission row created → first asset step started: median, p95",
            *(_median_and_p95(models[m]["summary"].get("row_to_first_stage_s")) for m in models),
        ],
    )
    rows.append(
        [
            "deploy ÷ plain vLLM (`deploy_vs_plain_vllm_ratio`)",
            *(times(models[m]["summary"]["deploy_vs_plain_vllm_ratio"]) for m in models),
        ]
    )
    heads = [f"{m}: s, median (min–max) of {models[m]['summary']['deployed']}" for m in models]
    waterfall_model = next(iter(models))
    samples = [s for s in models[waterfall_model]["samples"] if s["status"] == "deployed"]
    median = sorted(samples, key=lambda s: s["time_to_first_feedback_summary_s"])[len(samples) // 2]
    waterfall = table(
        ["segment (median sample, " + waterfall_model + ")", "kind", "starts at s", "took s"],
        [[s["segment"], s["kind"], num(s["start_s"]), num(s["duration_s"], 2)] for s in median["segments"]],
    )
    chai = results["chai_published"]
    return "\n\n".join(
        [
            table(["", *heads], rows),
            waterfall,
            f"For scale, a *published figure*, not measured here: Chai reports "
            f"~{chai['submission_to_deployed_s']:.0f} s from submission to a ready service for a "
            f"{chai['model']} ({chai['download_quantize_tensorize_s']:.0f} s download/quantize/tensorize + "
            f"{chai['until_service_ready_s']:.0f} s until the Kubernetes service was ready).",
            provenance(payload),
        ]
    )


def weight_loading(payload: dict[str, Any]) -> str:
    results = payload["results"]
    sizes = list(results)
    methods = [m["method"] for m in results[sizes[0]]["methods"]]
    by_method = {size: {m["method"]: m for m in results[size]["methods"]} for size in sizes}
    columns = ["method"]
    for size in sizes:
        columns += [f"{size} GB/s", "ratio"]
    rows = []
    for method in methods:
        row = [method]
        for size in sizes:
            entry = by_method[size].get(method, {})
            row += [num(entry.get("gb_per_s"), 2), times(entry.get("ratio_to_raw_s3_get"))]
        rows.append(row)
    return table(columns, rows) + "\n\n" + provenance(payload)


def serving(payload: dict[str, Any]) -> str:
    results = payload["results"]
    generate = {r["batch"]: r for r in results["transformers"]}
    vllm = {r["batch"]: r for r in results["vllm"]}
    rows = [
        [
            batch,
            num(generate[batch]["tokens_per_s"], 0),
            num(vllm[batch]["tokens_per_s"], 0),
            times(comparison["tokens_per_s_ratio_vllm_to_generate"]),
            num(vllm[batch]["latency_p95_s"], 2, " s"),
            num(vllm[batch]["ttft_p95_s"], 2, " s"),
            vllm[batch]["requests"],
        ]
        for comparison in results["comparison"]
        for batch in [comparison["batch"]]
    ]
    columns = ["batch", "generate tok/s", "vLLM tok/s", "ratio", "vLLM p95", "vLLM TTFT p95", "requests"]
    return (
        f"{results['model']}, {results['max_tokens']} new tokens\n\n"
        + table(columns, rows)
        + "\n\n"
        + (provenance(payload))
    )


def service(payload: dict[str, Any]) -> str:
    results = payload["results"]

    def level_rows(name: str, levels: list[dict[str, Any]]) -> list[list[object]]:
        return [
            [
                name if index == 0 else "",
                level["concurrency"],
                num(level["requests_per_s"], 0),
                num(level["latency_p50_s"] * 1000, 0),
                num(level["latency_p99_s"] * 1000, 0),
                level["errors"],
            ]
            for index, level in enumerate(levels)
        ]

    rows = level_rows("routing `POST /beta/conversations`", results["routing"])
    rows += level_rows("feedback `POST …/feedback`", results["feedback"])
    chat_rows = [
        [
            chat["concurrency"],
            num(chat["service"]["latency_p50_s"] * 1000, 0),
            num(chat["direct"]["latency_p50_s"] * 1000, 0),
            times(chat["latency_p50_ratio_service_to_direct"]),
            chat["service"]["errors"] + chat["direct"]["errors"],
        ]
        for chat in results["chat"]
    ]
    return "\n\n".join(
        [
            f"{results['database']}, {results['model']}",
            table(["route", "clients", "req/s", "p50 ms", "p99 ms", "errors"], rows),
            table(
                ["chat clients", "via service p50 ms", "direct to model p50 ms", "ratio", "errors"], chat_rows
            ),
            f"The feedback summary covered all {results['feedback_stored']} stored posts "
            f"{results['summary_catch_up_after_load_s']:.1f} s after the load ended.",
            provenance(payload),
        ]
    )


def scale(payload: dict[str, Any]) -> str:
    rounds = payload["results"]["rounds"]
    rows = [
        [
            r["n"],
            f"{r['deployed']}/{r['n']}",
            r["lost"],
            num(r["all_terminal_s"]),
            num(r["p95"].get("pickup_s")),
            num(r["p95"].get("deploying_s")),
            r["live_servers_max"],
        ]
        for r in rounds
    ]
    columns = [
        "N at once",
        "deployed",
        "lost",
        "all deployed after s",
        "pickup p95 s",
        "deploying p95 s",
        "live",
    ]
    return table(columns, rows) + "\n\n" + provenance(payload)


def capacity(payload: dict[str, Any]) -> str:
    results = payload["results"]
    rows = [
        [
            step["live_models"],
            num(step["deploy_s"]),
            num(step["server_pss_gib"], 2),
            num(step["available_gib"], 1),
            num(step["latency_p95_s"], 2),
            "yes" if step["all_within_slo"] else "no",
        ]
        for step in results["steps"]
    ]
    columns = [
        "live models",
        "deploy s",
        "new server PSS GiB",
        "RAM available GiB",
        "chat p95 s (all)",
        "SLO",
    ]
    return "\n\n".join(
        [
            f"**{results['capacity']} live models** within the SLO; "
            f"stopped because: {results['stopped_because']}.",
            table(columns, rows),
            provenance(payload),
        ]
    )


def cli_startup(payload: dict[str, Any]) -> str:
    r = payload["results"]
    rows = [
        [
            "`guanaco --help`",
            num(r["guanaco_help_median_s"], 2),
            num(r["guanaco_help_min_s"], 2),
            r["guanaco_modules_imported"],
        ],
        ["`hf --help`", num(r["hf_help_median_s"], 2), num(r["hf_help_min_s"], 2), r["hf_modules_imported"]],
        [
            "ratio (target ≤ 1.0×)",
            times(r["guanaco_over_hf_ratio"]),
            times(r["guanaco_over_hf_min_ratio"]),
            "",
        ],
    ]
    samples = payload["settings"]["samples"]
    return (
        table([f"{samples} samples each", "median s", "min s", "modules"], rows)
        + "\n\n"
        + provenance(payload)
    )


def live_loop(payload: dict[str, Any]) -> str:
    summary = payload["results"]["summary"]
    labels = {
        "leave_routing_s": "SIGKILLed server → out of beta routing",
        "heal_requested_s": "→ heal run requested",
        "heal_run_s": "heal run (new server start)",
        "recovered_s": "→ model serving again",
    }
    rows = [
        [label, *(num(summary[key][q], 2) for q in ("min", "median", "max"))] for key, label in labels.items()
    ]
    return table(["seconds after the kill", "min", "median", "max"], rows) + "\n\n" + provenance(payload)


def two_models(payload: dict[str, Any]) -> str:
    layouts = payload["results"]["layouts"]
    rows = [
        [
            layout["layout"],
            num(layout["one_model_median"], 0),
            num(layout["two_models_median"], 0),
            times(layout["scaling_median"]),
        ]
        for layout in layouts
    ]
    columns = ["layout", "one model tok/s (median)", "two models aggregate tok/s", "scaling"]
    return table(columns, rows) + "\n\n" + provenance(payload)


def weight_scan(payload: dict[str, Any]) -> str:
    rows = [
        [
            dtype,
            num(r["scan_median_s_per_gb"], 2),
            num(r["scan_min_s"] / (r["file_bytes"] / 1e9), 2),
            num(r["scan_peak_allocation_mib"], 0),
            num(r["header_check_median_s"] * 1000, 1),
        ]
        for dtype, r in payload["results"].items()
    ]
    columns = ["dtype", "NaN/Inf scan s per GB (median)", "min s per GB", "peak MiB", "header check ms"]
    return table(columns, rows) + "\n\n" + provenance(payload)


def run_all(payload: dict[str, Any]) -> str:
    runs = payload["results"]["runs"]
    rows = [
        [r["benchmark"], num(r["wall_s"]), "ok" if r["exit_code"] == 0 else f"exit {r['exit_code']}"]
        for r in runs
    ]
    rows.append(["**total**", num(payload["wall_s"]), ""])
    return table(["benchmark (`make bench`)", "wall s", "result"], rows) + "\n\n" + provenance(payload)


def arena(payload: dict[str, Any]) -> str:
    r = payload["results"]
    precision = r["precision"]
    rows = [
        [
            f"votes until every interval is within ±{p['target_half_width_elo']:.0f} Elo "
            f"({name.replace('_', ' ')})",
            p["median_votes"]["active"],
            p["median_votes"]["uniform"],
            times(p["active_over_uniform"]),
        ]
        for name, p in precision.items()
    ]
    coverage = r["coverage"]
    spearman = [
        [
            votes,
            num(s["honest"]["spearman"], 3),
            num(s["with_bad"]["spearman"], 3),
            num(s["filtered"]["spearman"], 3),
        ]
        for votes, s in r["spearman"].items()
    ]
    anomaly = r["anomaly"]["by_threshold"]
    anomaly_rows = [
        [threshold, num(a["true_positive_rate"], 2), num(a["true_negative_rate"], 2)]
        for threshold, a in anomaly.items()
    ]
    return "\n\n".join(
        [
            table(["pairing (median of runs)", "active", "uniform", "active ÷ uniform"], rows),
            f"95 % interval coverage over {coverage['leaderboards']} simulated leaderboards: Bradley–Terry "
            f"(sandwich, clustered by user) **{coverage['bt_sandwich']:.3f}** (`bt_interval_coverage`), "
            f"thumbs-up Wilson **{coverage['thumbs_wilson']:.3f}**.",
            table(["votes", "Spearman ρ, honest users", "with bad voters", "bad voters filtered"], spearman),
            table(
                ["anomaly threshold", "bad voters flagged (TP rate)", "honest kept (TN rate)"], anomaly_rows
            ),
            provenance(payload),
        ]
    )


def feedback_categories(payload: dict[str, Any]) -> str:
    r = payload["results"]
    settings = payload["settings"]
    methods = ("rules", "embeddings", "both")
    rows = [
        [
            f"**{method}**" if method == r["best_method"] else method,
            num(r[f"macro_f1_{method}"], 3),
            num(r["seconds_per_text"][method]["median"] * 1000, 1),
        ]
        for method in methods
    ]
    categories = list(r["f1_per_category"]["rules"])
    per_category = [
        [category, *(num(r["f1_per_category"][method][category], 2) for method in methods)]
        for category in categories
    ]
    return "\n\n".join(
        [
            f"{settings['held_out_texts']} held-out texts of {settings['labelled_texts']} hand-labelled "
            f"(`guanaco_dagster/feedback/data/labelled_feedback.jsonl`); the classifier trains on the other "
            f"{settings['training_texts']}. The summary uses the best method (bold).",
            table(["method", "macro-F1", "ms per text (median)"], rows),
            table(["category F1", *methods], per_category),
            provenance(payload),
        ]
    )


RENDERERS: dict[str, Renderer] = {
    "feedback_categories": feedback_categories,
    "arena": arena,
    "time_to_feedback": time_to_feedback,
    "weight_loading": weight_loading,
    "serving": serving,
    "service": service,
    "scale": scale,
    "capacity": capacity,
    "cli_startup": cli_startup,
    "live_loop": live_loop,
    "two_models": two_models,
    "weight_scan": weight_scan,
    "run_all": run_all,
}


# README ---------------------------------------------------------------------------------------------


def render(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """The markdown block for `results/<name>.json`."""
    path = results_dir / f"{name}.json"
    if name not in RENDERERS:
        raise KeyError(f"unknown benchmark block '{name}': no renderer in benchmarks/readme_tables.py")
    if not path.is_file():
        return f"*No results yet: run `python -m benchmarks.bench_{name}`.*"
    return RENDERERS[name](json.loads(path.read_text()))


def regenerate(text: str, results_dir: Path = RESULTS_DIR) -> str:
    """`text` with every generated block replaced by what the JSON says now."""
    return BLOCK.sub(lambda m: f"{m.group(1)}{render(m.group('name'), results_dir)}\n{m.group(4)}", text)


def main() -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = arguments.parse_args()
    current = README.read_text()
    wanted = regenerate(current)
    names = [m.group("name") for m in BLOCK.finditer(current)]
    if args.check:
        if wanted != current:
            print(
                "README.md benchmark tables differ from benchmarks/results: "
                "run python -m benchmarks.readme_tables"
            )
            return 1
        print(f"README.md benchmark tables match benchmarks/results ({len(names)} blocks)")
        return 0
    README.write_text(wanted)
    print(f"README.md: {len(names)} benchmark blocks regenerated ({', '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
