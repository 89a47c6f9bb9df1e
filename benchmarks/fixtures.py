"""The environments the benchmarks measure in: sample models, the loopback Hub and S3 servers, a throwaway
PostgreSQL database, and the embedded platform with helpers to submit models and read their timelines.

Models, the Hub folder and cached artifacts persist under `.guanaco/bench/` between runs (they are
deterministic), so only the first run pays for building them; every platform gets a fresh home.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import WORK_ROOT, step
from guanaco_dagster.stages.s3_client import S3Bucket
from guanaco_dagster.testing.sample_model import TinyModelSpec, build_tiny_llama

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# head_dim = hidden / heads = 64 except tiny (32): sizes vLLM's CPU attention supports. The vocabulary
# stays at the tokenizer's 512 (the bundled corpus yields no more merges): a larger embedding would
# sample ids the tokenizer cannot decode, and streamed replies would carry empty text.
MODEL_SPECS: dict[str, TinyModelSpec] = {
    "tiny": TinyModelSpec(),
    "100m": TinyModelSpec(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=14,
        num_attention_heads=12,
        num_key_value_heads=12,
        vocab_size=512,
    ),
    "400m": TinyModelSpec(
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=31,
        num_attention_heads=16,
        num_key_value_heads=16,
        vocab_size=512,
    ),
}
MODELS_DIR = WORK_ROOT / "models"
HUB_ROOT = WORK_ROOT / "hub"
BENCH_ORG = "guanaco-bench"


# Models ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleModel:
    """A built model folder with its size."""

    name: str
    path: Path
    parameters: int
    weight_bytes: int
    repo_id: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.parameters / 1e6:.1f}M params, {self.weight_bytes / 1e6:.0f} MB)"


def sample_model(name: str, seed: int = 0) -> SampleModel:
    """The model `name` of MODEL_SPECS with `seed` (random weights), built once and cached on disk."""
    spec = replace(MODEL_SPECS[name], seed=seed, train_steps=0)
    folder = MODELS_DIR / f"{name}-seed{seed}"
    # Beside the folder, not in it: everything in the folder is published to the Hub.
    marker = MODELS_DIR / f"{name}-seed{seed}.spec"
    if not marker.is_file() or marker.read_text() != repr(spec):
        shutil.rmtree(folder, ignore_errors=True)
        for derived in MODELS_DIR.glob(f"{folder.name}.*"):  # artifacts and pickles of an older build
            shutil.rmtree(derived) if derived.is_dir() else derived.unlink()
        staging = MODELS_DIR / f".{folder.name}-{uuid.uuid4().hex[:6]}"
        with step(f"building sample model {name} (seed {seed}) in {folder} …"), quiet_native_stdout():
            build_tiny_llama(staging, spec)
        staging.rename(folder)
        marker.write_text(repr(spec))
    weights = folder / "model.safetensors"
    return SampleModel(
        name=name,
        path=folder,
        parameters=count_parameters(weights),
        weight_bytes=weights.stat().st_size,
        repo_id=f"{BENCH_ORG}/{name}-seed{seed}",
    )


@contextmanager
def quiet_native_stdout() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null: the tokenizers trainer (Rust) prints blank lines there."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def count_parameters(safetensors_path: Path) -> int:
    """Parameters in a safetensors file, from its header."""
    from guanaco_dagster.stages.weight_checks import read_safetensors_header

    total = 0
    for entry in read_safetensors_header(safetensors_path).values():
        count = 1
        for dim in entry["shape"]:
            count *= dim
        total += count
    return total


# Hub and S3 -----------------------------------------------------------------------------------------


@contextmanager
def hub_serving(models: list[SampleModel]) -> Iterator[Any]:
    """A loopback Hub-protocol server with each model published at `main` under its `repo_id`."""
    from guanaco_dagster.testing.hub_server import HubServer, publish_repo

    for model in models:
        publish_repo(HUB_ROOT, model.repo_id, model.path)
    with HubServer(HUB_ROOT) as server:
        yield server


# A running S3 server with credentials and one bucket.
S3Cache = S3Bucket


@contextmanager
def s3_cache(data_dir: Path, bucket: str = "guanaco-bench") -> Iterator[S3Cache]:
    """SeaweedFS on loopback storing under `data_dir` (kept between runs, so uploads are reused)."""
    from guanaco_dagster.embedded.s3_server import SeaweedS3Server
    from guanaco_dagster.stages.s3_client import ensure_bucket

    access_key, secret_key = "guanaco-bench", "guanaco-bench-secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    with SeaweedS3Server(data_dir, access_key, secret_key) as server:
        ensure_bucket(server.endpoint_url, access_key, secret_key, bucket)
        yield S3Cache(server.endpoint_url, access_key, secret_key, bucket)


@dataclass(frozen=True)
class CachedModel:
    """A model tensorized and uploaded: where its artifact is, locally and in S3."""

    model: SampleModel
    artifact_dir: Path
    artifact_uri: str
    weights_key: str


def tensorize_and_upload(model: SampleModel, s3: S3Cache) -> CachedModel:
    """Tensorize the model once (cached beside it) and upload the artifact unless S3 already holds it."""
    from guanaco_dagster.stages.s3_cache import upload_artifact
    from guanaco_dagster.stages.tensorize import artifact_digest, tensorize_model

    artifact_dir = model.path.parent / f"{model.path.name}.tensorized"
    # Beside the folder, not in it: the digest covers every file of the artifact.
    marker = model.path.parent / f"{model.path.name}.tensorized.sha256"
    if not marker.is_file() or not (artifact_dir / "model.tensors").is_file():
        shutil.rmtree(artifact_dir, ignore_errors=True)
        with step(f"tensorizing {model.name} …"):
            tensorize_model(model.path, artifact_dir)
            marker.write_text(artifact_digest(artifact_dir))
    with step(f"uploading {model.name}'s artifact to S3 (skipped when cached) …"):
        cached = upload_artifact(s3.client(), s3.bucket, artifact_dir, marker.read_text())
    return CachedModel(model, artifact_dir, cached.uri, cached.prefix + "model.tensors")


# PostgreSQL -----------------------------------------------------------------------------------------


@contextmanager
def temporary_postgres_database(prefix: str = "guanaco_bench") -> Iterator[str]:
    """A throwaway database for a benchmark; exits with a clear message when PostgreSQL is not running."""
    from guanaco_dagster.testing.scratch_postgres import PostgresUnavailable
    from guanaco_dagster.testing.scratch_postgres import temporary_postgres_database as scratch

    try:
        with scratch(prefix) as url:
            yield url
    except PostgresUnavailable as error:
        raise SystemExit(f"this benchmark needs PostgreSQL: {error}") from error


# The embedded platform ------------------------------------------------------------------------------


def fresh_home(name: str) -> Path:
    """An empty working folder for one benchmark's platform."""
    home = WORK_ROOT / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home


@contextmanager
def embedded_platform(
    home: Path, hub_endpoint: str, service: bool = False, webserver: bool = False, **overrides: Any
) -> Iterator[Any]:
    """The embedded platform (its own S3, Dagster daemon, optional HTTP service and Dagster webserver)
    on a fresh home."""
    from guanaco_dagster.embedded.platform import EmbeddedPlatform
    from guanaco_dagster.ports import free_port
    from guanaco_dagster.settings import Settings

    settings = Settings(home=home, hf_endpoint=hub_endpoint, **overrides)
    platform = EmbeddedPlatform(
        settings,
        service_port=free_port() if service else None,
        webserver_port=free_port() if webserver else None,
        hf_endpoint=hub_endpoint,
    )
    try:
        what = "S3, Dagster daemon" + (", service" if service else "") + (", webserver" if webserver else "")
        # quiet: creating the Dagster instance prints storage-migration notes.
        with step(f"starting the embedded platform ({what}) …"), quiet_stdout():
            platform.start()
        yield platform
    finally:
        with step("stopping the platform and its inference servers …"):
            platform.stop()


def submit(store: Any, repo_id: str, developer: str = "bench-developer") -> tuple[str, datetime]:
    """Create a `pending` submission of `repo_id` in the store (as the service does); (id, created_at)."""
    from guanaco_dagster.submissions.developers import get_or_create_developer
    from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission

    with store.session() as session:
        submission = create_submission(
            session, get_or_create_developer(session, developer), SubmissionRequest(model_repo=repo_id)
        )
        return submission.id, submission.created_at


@dataclass(frozen=True)
class Timeline:
    """A submission's path through the pipeline, in seconds since it was submitted."""

    submission_id: str
    status: str
    created_at: datetime
    stages: list[tuple[str, float, float]]  # (stage, start offset, duration)
    deployed_offset_s: float | None
    failure_reason: str | None

    @property
    def stage_work_s(self) -> float:
        return sum(duration for _, _, duration in self.stages)

    @property
    def first_stage_offset_s(self) -> float:
        return self.stages[0][1] if self.stages else 0.0

    @property
    def gaps_between_stages_s(self) -> float:
        gaps = 0.0
        for (_, start, duration), (_, next_start, _) in zip(self.stages, self.stages[1:], strict=False):
            gaps += next_start - (start + duration)
        return gaps

    @property
    def after_last_stage_s(self) -> float:
        if self.deployed_offset_s is None or not self.stages:
            return 0.0
        _, start, duration = self.stages[-1]
        return self.deployed_offset_s - (start + duration)


def read_timeline(store: Any, submission_id: str) -> Timeline:
    """The submission's stage waterfall and the moment it became `deployed`."""
    from guanaco_dagster.submissions.lifecycle import Status
    from guanaco_dagster.submissions.submissions import get_submission
    from guanaco_dagster.submissions.waterfall import stage_waterfall

    with store.session() as session:
        submission = get_submission(session, submission_id)
        rows = stage_waterfall(submission)
        deployed = [event.at for event in submission.events if event.status == Status.DEPLOYED]
        return Timeline(
            submission_id=submission_id,
            status=submission.status,
            created_at=submission.created_at,
            stages=[(row.stage, row.start_offset_s, row.duration_s or 0.0) for row in rows],
            deployed_offset_s=(deployed[0] - submission.created_at).total_seconds() if deployed else None,
            failure_reason=submission.failure_reason,
        )


def wait_for_first_sensor_tick(platform: Any, timeout_s: float = 120.0) -> float:
    """Block until the daemon has evaluated the submission sensor once; return the seconds waited.

    Submitting earlier would charge the daemon's own start-up (loading the code location) to the
    submission's pickup time.
    """
    import time

    log = platform.logs_dir / "daemon.log"
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        platform.check_health()
        if log.is_file() and "Sensor submission_sensor" in log.read_text(errors="replace"):
            return time.monotonic() - started
        time.sleep(0.25)
    raise TimeoutError(f"the Dagster daemon did not tick the submission sensor within {timeout_s:.0f} s")


def quiet_stdout() -> Any:
    """Opening a fresh Dagster instance prints storage-migration notes: keep them out of the tables."""
    import io
    from contextlib import redirect_stdout

    return redirect_stdout(io.StringIO())


@dataclass(frozen=True)
class RunTimes:
    """One Dagster run of a submission: when the sensor created it, when it started and ended."""

    job: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


def dagster_runs(platform: Any, submission_id: str) -> list[RunTimes]:
    """The submission's Dagster runs (pipeline and feedback summaries), oldest first."""
    from datetime import UTC

    from dagster import DagsterInstance, RunsFilter

    def at(timestamp: float | None) -> datetime | None:
        return datetime.fromtimestamp(timestamp, UTC) if timestamp else None

    with quiet_stdout(), DagsterInstance.from_config(str(platform.dagster_home)) as instance:
        records = instance.get_run_records(RunsFilter(tags={"guanaco/submission": submission_id}))
        runs = [
            RunTimes(
                job=record.dagster_run.job_name,
                created_at=record.create_timestamp.astimezone(UTC),
                started_at=at(record.start_time),
                ended_at=at(record.end_time),
            )
            for record in records
        ]
    return sorted(runs, key=lambda run: run.created_at)


PIPELINE_ASSETS = (
    "raw_weights",
    "tensorized_artifact",
    "cached_s3_object",
    "live_deployment",
    "latency_report",
)


def asset_metadata(platform: Any, submission_id: str) -> dict[str, dict[str, Any]]:
    """The numeric metadata each pipeline asset recorded for the submission's partition (latest)."""
    from dagster import AssetKey, DagsterInstance
    from dagster._core.event_api import AssetRecordsFilter

    found: dict[str, dict[str, Any]] = {}
    with quiet_stdout(), DagsterInstance.from_config(str(platform.dagster_home)) as instance:
        for name in PIPELINE_ASSETS:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[submission_id]), limit=1
            ).records
            if records:
                metadata = records[0].asset_materialization.metadata
                found[name] = {
                    key: value.value
                    for key, value in metadata.items()
                    if isinstance(getattr(value, "value", None), int | float | bool)
                }
    return found


# Model servers --------------------------------------------------------------------------------------

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
SERVE_MODULE = "inference.serve"
VLLM_ARGUMENTS_LOGGED = "vLLM arguments: "


def server_process(endpoint_url: str) -> Any:
    """Our model server (psutil: the `inference.serve` supervisor) behind `endpoint_url` (http://host:port/v1)."""
    import psutil

    port = endpoint_url.rsplit(":", 1)[1].split("/")[0]
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        if SERVE_MODULE in argv and "--port" in argv and argv[argv.index("--port") + 1] == port:
            return process
    raise LookupError(f"no model server serves {endpoint_url}")


def vllm_process(endpoint_url: str) -> Any:
    """The vLLM API-server process behind `endpoint_url`: the supervisor's child (`inference.warm_vllm`)."""
    children = server_process(endpoint_url).children()
    if not children:
        raise LookupError(f"the model server of {endpoint_url} runs no vLLM")
    return children[0]


def served_vllm_argv(log_path: Path) -> list[str]:
    """The vLLM server arguments a model server logged when it handed them to its warm vLLM process."""
    for line in Path(log_path).read_text(errors="replace").splitlines():
        if VLLM_ARGUMENTS_LOGGED in line:
            return json.loads(line.split(VLLM_ARGUMENTS_LOGGED, 1)[1])
    raise LookupError(f"no vLLM arguments in {log_path}")


def server_pss_bytes(endpoint_url: str) -> int:
    """Proportional set size of the whole model server behind `endpoint_url`: our wrapper (the vLLM
    process's parent), vLLM's API server and its engine/worker children."""
    import psutil

    root = server_process(endpoint_url)
    total = 0
    for process in (root, *root.children(recursive=True)):
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total
