"""The NaN/Inf scan of the intake checks: what reading every weight byte costs, per GB, per dtype.

A synthetic safetensors file per dtype (float32, bfloat16, float16; ~200 MB each, `--full` 1 GB) is
written in slices, so generating it does not inflate the process's peak memory; then the header check
(`read_safetensors_header`) and the streaming scan (`non_finite_tensors`) run on it several times. The
page cache is warm after the first read (the sample before the timed ones), as it is right after the
download the scan follows. Peak RSS is read before and after the scans: the scan's buffer is its only
allocation.

    python -m benchmarks.bench_weight_scan [--full] [--samples N]
"""

from __future__ import annotations

import json
import statistics
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    WORK_ROOT,
    console,
    fmt,
    machine_info,
    machine_line,
    parser,
    print_table,
    rounded,
    step,
    timed,
    write_results,
)
from guanaco_dagster.stages.finite_scan import CHUNK_BYTES, non_finite_tensors
from guanaco_dagster.stages.weight_checks import read_safetensors_header

NAME = "weight_scan"
QUICK_MB, FULL_MB = 200, 1000
QUICK_SAMPLES, FULL_SAMPLES = 5, 9
TENSOR_MB = 16  # tensors of a 7B model are 32-500 MB; 16 MB keeps many tensor boundaries in the file
DTYPES = {"F32": (np.float32, 4), "BF16": (np.uint16, 2), "F16": (np.float16, 2)}


def write_synthetic_safetensors(path: Path, dtype: str, total_mb: int) -> int:
    """A safetensors file of `total_mb` MB of finite random `dtype` tensors; returns its size in bytes."""
    numpy_type, itemsize = DTYPES[dtype]
    elements = TENSOR_MB * 1024**2 // itemsize
    count = max(1, total_mb // TENSOR_MB)
    header: dict[str, Any] = {}
    for index in range(count):
        start = index * elements * itemsize
        header[f"model.layers.{index}.weight"] = {
            "dtype": dtype,
            "shape": [elements // 1024, 1024],
            "data_offsets": [start, start + elements * itemsize],
        }
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # safetensors pads the header to 8 bytes
    generator = np.random.default_rng(0)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for _ in range(count):
            values = generator.standard_normal(elements, dtype=np.float32)
            if dtype == "BF16":  # the upper half of a float32 is its bfloat16
                handle.write((values.view(np.uint32) >> 16).astype(numpy_type).tobytes())
            else:
                handle.write(values.astype(numpy_type).tobytes())
    return path.stat().st_size


def scan_peak_allocation_mib(path: Path, tensors: dict[str, dict]) -> float:
    """The most memory one scan held at once, MiB (tracemalloc sees numpy's buffers and bytearrays)."""
    tracemalloc.start()
    try:
        non_finite_tensors(path, tensors)
        return tracemalloc.get_traced_memory()[1] / 1024**2
    finally:
        tracemalloc.stop()


def measure(path: Path, samples: int) -> dict[str, Any]:
    """Header check and scan timings on `path`, after one untimed warm-up pass."""
    tensors = read_safetensors_header(path)
    assert non_finite_tensors(path, tensors) == []  # warm-up, and proof the file is clean
    header_s = [timed(lambda: read_safetensors_header(path))[1] for _ in range(samples)]
    scan_s = [timed(lambda: non_finite_tensors(path, tensors))[1] for _ in range(samples)]
    size_gb = path.stat().st_size / 1e9
    return {
        "file_bytes": path.stat().st_size,
        "tensors": len(tensors),
        "header_check_median_s": statistics.median(header_s),
        "scan_min_s": min(scan_s),
        "scan_median_s": statistics.median(scan_s),
        "scan_median_s_per_gb": statistics.median(scan_s) / size_gb,
        "scan_median_gb_per_s": size_gb / statistics.median(scan_s),
        "scan_samples_s": scan_s,
        "scan_peak_allocation_mib": scan_peak_allocation_mib(path, tensors),
    }


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--samples", type=int, default=0, help="timed scans per file (at least 3)")
    args = arguments.parse_args()
    samples = max(3, args.samples or (FULL_SAMPLES if args.full else QUICK_SAMPLES))
    total_mb = FULL_MB if args.full else QUICK_MB
    machine = machine_info()
    console.rule("[bold]Benchmark: NaN/Inf weight scan")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    work = WORK_ROOT / NAME
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    try:
        for dtype in DTYPES:
            path = work / f"synthetic-{dtype.lower()}.safetensors"
            with step(f"writing {total_mb} MB of {dtype} and scanning it {samples + 1} times …"):
                write_synthetic_safetensors(path, dtype, total_mb)
                results[dtype] = measure(path, samples)
            path.unlink()
    finally:
        for leftover in work.glob("*.safetensors"):
            leftover.unlink()
    print_table(
        f"Streaming NaN/Inf scan, {total_mb} MB per dtype, {samples} samples after a warm-up pass",
        ["dtype", "tensors", "header check", "scan min", "scan median", "s per GB", "GB/s", "memory held"],
        [
            [
                dtype,
                numbers["tensors"],
                fmt(numbers["header_check_median_s"] * 1000, 2, " ms"),
                fmt(numbers["scan_min_s"], 3, " s"),
                fmt(numbers["scan_median_s"], 3, " s"),
                fmt(numbers["scan_median_s_per_gb"], 3, " s"),
                fmt(numbers["scan_median_gb_per_s"], 2),
                fmt(numbers["scan_peak_allocation_mib"], 1, " MiB"),
            ]
            for dtype, numbers in results.items()
        ],
        caption=f"one {CHUNK_BYTES // 1024**2} MiB read buffer; warm page cache (the download just wrote it)",
    )
    settings = {"file_mb": total_mb, "tensor_mb": TENSOR_MB, "samples": samples, "chunk_bytes": CHUNK_BYTES}
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


if __name__ == "__main__":
    main()
