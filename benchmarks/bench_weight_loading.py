"""Weight loading: how fast the same weights reach memory by each route, against a raw S3 GET.

For a ~100M and a ~400M-parameter Llama (fp32): tensorizer from the S3 cache (1 reader, with hash
verification, tensorizer's default reader count, 4 readers) and from a local file; safetensors (alone and
copied into a model); `torch.load` of a pickled state dict; transformers `from_pretrained`. Throughput is
the file's bytes over the seconds; every ratio is against a raw S3 GET of the tensorizer file from the
same server (curl to /dev/null: the practical upper bound for anything reading from that S3 server).
Local files are read warm (from the page cache), as they are right after a download. Each load gets
fresh memory, as in a new server process: the script re-runs itself with glibc's mmap threshold fixed,
so a repeat cannot reuse the pages the previous load already faulted in.

    python -m benchmarks.bench_weight_loading [--full] [--models 100m,400m] [--repeats N]
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    WORK_ROOT,
    console,
    fmt,
    fmt_ratio,
    machine_info,
    machine_line,
    parser,
    print_table,
    ratio,
    rounded,
    step,
    timed,
    write_results,
)
from benchmarks.fixtures import CachedModel, S3Cache, s3_cache, sample_model, tensorize_and_upload

NAME = "weight_loading"
# Reader counts: 1, what tensorizer picks when not told (vLLM passes none: 2 for S3, 8 for a local file).
S3_READERS = (1, None, 4)
LOCAL_READERS = (1, None)


@dataclass(frozen=True)
class Method:
    """One way to load the weights: a label, the bytes it reads and the call that loads them."""

    label: str
    source: str
    num_bytes: int
    load: Callable[[], Any]
    baseline: bool = False


def _tensorizer_local(path: Path, num_readers: int | None, verify_hash: bool) -> Callable[[], Any]:
    def load() -> Any:
        from tensorizer import TensorDeserializer

        with TensorDeserializer(
            str(path), device="cpu", num_readers=num_readers, verify_hash=verify_hash
        ) as tensors:
            return dict(tensors.items())

    return load


def _tensorizer_s3(s3: S3Cache, key: str, num_readers: int | None, verify_hash: bool) -> Callable[[], Any]:
    def load() -> Any:
        from tensorizer import TensorDeserializer
        from tensorizer.stream_io import open_stream

        stream = open_stream(
            f"s3://{s3.bucket}/{key}",
            s3_access_key_id=s3.access_key,
            s3_secret_access_key=s3.secret_key,
            s3_endpoint=s3.endpoint_url,
            force_http=True,
        )
        with TensorDeserializer(
            stream, device="cpu", num_readers=num_readers, verify_hash=verify_hash
        ) as tensors:
            return dict(tensors.items())

    return load


def _raw_get_curl(s3: S3Cache, key: str) -> Callable[[], Any]:
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": s3.bucket, "Key": key})

    def load() -> Any:
        subprocess.run(["curl", "-sSf", "-o", "/dev/null", url], check=True)

    return load


def _raw_get_boto3(s3: S3Cache, key: str) -> Callable[[], Any]:
    client = s3.client()

    def load() -> Any:
        return client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()

    return load


def _read_file(path: Path) -> Callable[[], Any]:
    def load() -> Any:
        return path.read_bytes()

    return load


def _empty_model(model_dir: Path) -> Any:
    """The model's module with uninitialised parameters (built on the meta device, then allocated)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.to_empty(device="cpu")


def _safetensors(path: Path, into_new_model: bool) -> Callable[[], Any]:
    def load() -> Any:
        from safetensors.torch import load_file

        state_dict = load_file(str(path), device="cpu")
        if not into_new_model:
            return state_dict
        # A new module each time, as a fresh process has: copying into it faults its pages in.
        model = _empty_model(path.parent)
        model.load_state_dict(state_dict, strict=False)
        return model

    return load


def _torch_load(path: Path) -> Callable[[], Any]:
    def load() -> Any:
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)

    return load


def _from_pretrained(model_dir: Path) -> Callable[[], Any]:
    def load() -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    return load


def pickled_state_dict(model_dir: Path) -> Path:
    """The model's state dict saved with `torch.save` (pickle), beside the model folder; cached."""
    import torch
    from safetensors.torch import load_file

    path = model_dir.parent / f"{model_dir.name}.pt"
    if not path.is_file():
        with step(f"writing {path.name} with torch.save …"):
            torch.save(load_file(str(model_dir / "model.safetensors")), path)
    return path


def methods_for(cached: CachedModel, s3: S3Cache) -> list[Method]:
    """Every loading route for one model, the raw S3 GET first."""
    safetensors_path = cached.model.path / "model.safetensors"
    tensors_path = cached.artifact_dir / "model.tensors"
    pt_path = pickled_state_dict(cached.model.path)
    tensors_bytes, st_bytes = tensors_path.stat().st_size, safetensors_path.stat().st_size
    key = cached.weights_key

    def readers(count: int | None, where: str) -> str:
        default = "2 readers (default)" if where == "S3" else "8 readers (default)"
        return default if count is None else f"{count} reader" + ("s" if count > 1 else "")

    methods = [
        Method("raw S3 GET (curl → /dev/null)", "S3", tensors_bytes, _raw_get_curl(s3, key), baseline=True),
        Method("raw S3 GET (boto3 → memory)", "S3", tensors_bytes, _raw_get_boto3(s3, key)),
    ]
    for count in S3_READERS:
        methods.append(
            Method(
                f"tensorizer, {readers(count, 'S3')}",
                "S3",
                tensors_bytes,
                _tensorizer_s3(s3, key, count, False),
            )
        )
        if count == 1:
            methods.append(
                Method(
                    "tensorizer, 1 reader, verify_hash", "S3", tensors_bytes, _tensorizer_s3(s3, key, 1, True)
                )
            )
    methods.append(
        Method("raw file read (page cache → memory)", "local", tensors_bytes, _read_file(tensors_path))
    )
    for count in LOCAL_READERS:
        methods.append(
            Method(
                f"tensorizer, {readers(count, 'local')}",
                "local",
                tensors_bytes,
                _tensorizer_local(tensors_path, count, False),
            )
        )
        if count == 1:
            methods.append(
                Method(
                    "tensorizer, 1 reader, verify_hash",
                    "local",
                    tensors_bytes,
                    _tensorizer_local(tensors_path, 1, True),
                )
            )
    methods += [
        Method(
            "safetensors load_file (mmap, pages untouched)",
            "local",
            st_bytes,
            _safetensors(safetensors_path, False),
        ),
        Method(
            "safetensors load_file + copy into a new model",
            "local",
            st_bytes,
            _safetensors(safetensors_path, True),
        ),
        Method("torch.load (pickled state dict)", "local", pt_path.stat().st_size, _torch_load(pt_path)),
        Method(
            "transformers from_pretrained (mmap, pages untouched)",
            "local",
            st_bytes,
            _from_pretrained(cached.model.path),
        ),
    ]
    return methods


def measure(method: Method, repeats: int) -> dict[str, Any]:
    """Best-of-`repeats` seconds and GB/s of one method (results dropped between runs)."""

    all_s = []
    for _ in range(max(1, repeats)):
        result, seconds = timed(method.load)
        all_s.append(seconds)
        del result
        gc.collect()  # outside the timing: freeing a state dict is not loading it
    best_s = min(all_s)
    return {
        "method": method.label,
        "source": method.source,
        "bytes": method.num_bytes,
        "seconds": best_s,
        "all_seconds": all_s,
        "gb_per_s": method.num_bytes / 1e9 / best_s,
    }


def run(model_names: list[str], repeats: dict[str, int]) -> dict[str, Any]:
    """Measure every method for every model; print one table per model."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    results: dict[str, Any] = {}
    with s3_cache(WORK_ROOT / "s3") as s3:
        for name in model_names:
            cached = tensorize_and_upload(sample_model(name), s3)
            methods = methods_for(cached, s3)
            _empty_model(cached.model.path)  # imports the model classes: not part of any load
            for path in (cached.artifact_dir / "model.tensors", cached.model.path / "model.safetensors"):
                path.read_bytes()  # warm the page cache: local reads are measured warm
            rows = []
            started = time.perf_counter()
            with step(f"loading {cached.model.label} by {len(methods)} routes …") as status:
                for method in methods:
                    status.update(f"{cached.model.name}: {method.label} ({method.source}) …")
                    rows.append(measure(method, repeats[name]))
            bound = rows[0]["gb_per_s"]
            for row in rows:
                row["ratio_to_raw_s3_get"] = ratio(row["gb_per_s"], bound)
            print_table(
                f"Weight loading — {cached.model.label}, best of {repeats[name]}, torch threads "
                f"{torch.get_num_threads()}",
                ["method", "from", "seconds", "GB/s", "÷ raw S3 GET"],
                [
                    [
                        row["method"],
                        row["source"],
                        fmt(row["seconds"], 3),
                        fmt(row["gb_per_s"]),
                        fmt_ratio(row["ratio_to_raw_s3_get"]),
                    ]
                    for row in rows
                ],
                left_columns=2,
                caption="÷ raw S3 GET = this route's GB/s over a raw S3 GET of the tensorizer file from the "
                "same server (curl to /dev/null). Local files are read from the page cache.",
            )
            results[name] = {
                "model": cached.model.label,
                "parameters": cached.model.parameters,
                "tensorizer_bytes": rows[0]["bytes"],
                "repeats": repeats[name],
                "methods": rows,
                "measure_s": time.perf_counter() - started,
            }
    return results


# Without it glibc raises its mmap threshold after the first large free (up to 32 MB) and later loads
# reuse already-faulted heap pages: repeats would look faster than any fresh server process.
FRESH_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1024 * 1024)}


def main() -> None:
    args = _parse_args()
    if any(os.environ.get(name) != value for name, value in FRESH_MEMORY_ENV.items()):
        os.execve(
            sys.executable,
            [sys.executable, "-m", "benchmarks.bench_weight_loading", *sys.argv[1:]],
            {**os.environ, **FRESH_MEMORY_ENV},
        )
    machine = machine_info()
    console.rule("[bold]Benchmark: weight loading")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    models = (args.models or ("100m,400m" if args.full else "100m")).split(",")
    repeats = {name: args.repeats or 3 for name in models}
    results = run(models, repeats)
    settings = {"models": models, "repeats": repeats, "s3_readers": S3_READERS, "full": args.full}
    write_results(NAME, settings, rounded(results), machine, time.perf_counter() - started)


def _parse_args() -> Any:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument(
        "--models", default="", help="comma-separated: tiny, 100m, 400m (quick: 100m; full: 100m,400m)"
    )
    arguments.add_argument("--repeats", type=int, default=0, help="runs per method (best kept); 0 = preset")
    return arguments.parse_args()


if __name__ == "__main__":
    main()
