"""Injected faults: the Hub, S3, the inference server, the run process and PostgreSQL each fail mid-work, and
every submission still ends with a reason (or is resumed), nothing is orphaned, and the service recovers.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from botocore.exceptions import EndpointConnectionError
from dagster import (
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    SkipReason,
    build_asset_context,
    build_sensor_context,
)
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.storage.dagster_run import DagsterRun
from sqlalchemy.engine import make_url

from assets.cached_s3_object import cached_s3_object
from assets.latency_report import latency_report
from assets.raw_weights import raw_weights
from assets.stage import submission_stage
from assets.tensorized_artifact import tensorized_artifact
from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.deployment.local_process import LocalProcessDeployer, process_start_ticks
from guanaco_dagster.ports import wait_until
from guanaco_dagster.stages.s3_cache import S3CacheError, artifact_prefix, upload_artifact
from guanaco_dagster.stages.staging import StagingLayout
from guanaco_dagster.store.models import utcnow
from guanaco_dagster.submissions.failure import Leftovers
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.reconciler import (
    INTERRUPTED_MESSAGE,
    RESUME_MESSAGE,
    ReconcilerSettings,
    reconcile,
)
from guanaco_dagster.submissions.submissions import (
    get_submission,
    mark_failed,
    pending_submissions,
    start_stage,
    transition,
)
from guanaco_dagster.testing.scratch_postgres import ADMIN_DSN as POSTGRES_ADMIN_DSN
from inference.artifact import WEIGHTS_FILENAME
from resources import S3CacheResource
from sensors.jobs import submission_pipeline_job
from sensors.reconciler_sensor import has_pipeline_run_in_flight, reconciler_sensor
from tests.fixtures.pipeline import InProcessPipeline, edit_config, model_object_keys, model_variant
from tests.fixtures.store import walk_to

# ---------------------------------------------------------------------------------------------------------
# The Hugging Face Hub
# ---------------------------------------------------------------------------------------------------------


def _model_info_requests(hub_server, repo_id: str, since: int) -> int:
    return sum(
        1 for r in hub_server.server.requests[since:] if r.path.startswith(f"/api/models/{repo_id}/revision")
    )


def test_hub_server_errors_are_retried_with_backoff_then_fail_the_submission(hub_server, s3_server, tmp_path):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server, hub_retries=3)
    submission_id = pipeline.submit(hub_server.repo_id)
    seen = len(hub_server.server.requests)
    hub_server.server.inject_faults(status=503, count=1000)
    started = time.monotonic()
    try:
        result = pipeline.run(submission_id)
    finally:
        hub_server.server.clear_faults()
    elapsed = time.monotonic() - started

    assert not result.success
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.FAILED
    assert outcome.failure_reason.startswith(
        f"downloading: the Hub failed while fetching {hub_server.repo_id}@main"
    )
    assert outcome.failure_reason.endswith("Try again later.")
    assert _model_info_requests(hub_server, hub_server.repo_id, seen) == 3
    assert elapsed >= 0.5 + 1.0  # exponential backoff between the three attempts
    assert pipeline.failed_runs(submission_id)


def test_a_hub_that_recovers_within_the_retries_downloads_normally(hub_server, s3_server, tmp_path):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server, hub_retries=3)
    submission_id = pipeline.submit(hub_server.repo_id)
    hub_server.server.inject_faults(status=502, count=2)
    try:
        result = pipeline.run(submission_id, selection=[raw_weights])
    finally:
        hub_server.server.clear_faults()
    assert result.success
    with pipeline.store.session() as session:
        assert get_submission(session, submission_id).resolved_revision == hub_server.main_sha


class _DroppingServer:
    """Accepts TCP connections and closes them at once, like a Hub behind a failing load balancer."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def __enter__(self) -> _DroppingServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.socket.close()


def test_dropped_hub_connections_are_retried_then_fail_the_submission(hub_server, s3_server, tmp_path):
    with _DroppingServer() as dropping:
        pipeline = InProcessPipeline.create(
            tmp_path / "home", hub_server, s3_server, hf_endpoint=dropping.endpoint, hub_retries=3
        )
        submission_id = pipeline.submit(hub_server.repo_id)
        pipeline.run(submission_id, selection=[raw_weights])
        connections = dropping.connections
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.FAILED and "Try again later" in outcome.failure_reason
    assert connections == 3


def test_a_hub_that_stops_answering_times_out_and_is_retried(hub_server, s3_server, tmp_path):
    pipeline = InProcessPipeline.create(
        tmp_path / "home", hub_server, s3_server, hub_retries=3, hub_timeout_s=1.0
    )
    submission_id = pipeline.submit(hub_server.repo_id)
    seen = len(hub_server.server.requests)
    hub_server.server.inject_faults(status=None, count=1, delay_s=5.0)  # the first request hangs for 5 s
    started = time.monotonic()
    try:
        result = pipeline.run(submission_id, selection=[raw_weights])
    finally:
        hub_server.server.clear_faults()
    assert result.success
    assert time.monotonic() - started < 4.5  # gave up on the hung request instead of waiting it out
    # The server records the hung request only when its 5 s delay is over.
    wait_until(lambda: _model_info_requests(hub_server, hub_server.repo_id, seen) >= 2, timeout_s=10)
    assert _model_info_requests(hub_server, hub_server.repo_id, seen) == 2


# ---------------------------------------------------------------------------------------------------------
# The S3 cache
# ---------------------------------------------------------------------------------------------------------


class S3Outage:
    """Fails S3 operations as a network cut would (EndpointConnectionError before the request is sent).

    Only `operations` are affected, and only after the first `healthy_calls` of them went through; botocore
    cannot tell the difference from a real outage, so its own retries and backoff apply.
    """

    def __init__(self, operations: set[str], healthy_calls: int = 0) -> None:
        self.operations = operations
        self.healthy_calls = healthy_calls
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.active = True
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.s3", self._before_send)
        return client

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            if not self.active or operation not in self.operations:
                return
            self.calls[operation] += 1
            if sum(self.calls.values()) <= self.healthy_calls:
                return
            self.failures[operation] += 1
        raise EndpointConnectionError(endpoint_url=request.url)


_OUTAGE: S3Outage | None = None


class S3CacheWithOutage(S3CacheResource):
    """The real S3 cache resource whose clients suffer the current `_OUTAGE` (the only thing faked)."""

    def client(self) -> Any:
        client = super().client()
        return _OUTAGE.attach(client) if _OUTAGE is not None else client


def _multipart_uploads(s3_server, prefix: str) -> list[dict]:
    return (
        s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix).get("Uploads", [])
    )


def test_s3_outage_during_upload_is_retried_then_fails_the_submission_leaving_nothing(
    hub_server, s3_server, tiny_model_dir, tmp_path
):
    global _OUTAGE
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    pipeline.resources["s3_cache"] = S3CacheWithOutage(
        s3=pipeline.resources["s3_cache"].s3, bucket=s3_server.bucket
    )
    # An artifact no other test has cached (the cache is content-addressed, so the tiny model may be).
    unique = model_variant(tiny_model_dir, tmp_path, "unique")
    edit_config(unique, guanaco_test_nonce=uuid.uuid4().hex)
    hub_server.publish("guanaco-tests/s3-outage", unique)
    submission_id = pipeline.submit("guanaco-tests/s3-outage")
    assert pipeline.run(submission_id, selection=[raw_weights, tensorized_artifact]).success
    objects_before = model_object_keys(s3_server)
    # The first file reaches S3, then the network goes: every later upload fails.
    _OUTAGE = S3Outage({"PutObject", "CreateMultipartUpload", "UploadPart"}, healthy_calls=1)
    try:
        result = pipeline.run(submission_id, selection=[cached_s3_object])
        outage = _OUTAGE
    finally:
        _OUTAGE = None

    assert not result.success
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.FAILED
    assert outcome.failure_reason.startswith(f"uploading: upload to s3://{s3_server.bucket}/models/")
    assert "Could not connect to the endpoint URL" in outcome.failure_reason
    # One file was refused 6 times: the first try plus dagster-aws's 5 retries (botocore's standard mode).
    assert sum(outage.failures.values()) == 6
    assert model_object_keys(s3_server) == objects_before  # the file that made it was deleted again
    assert _multipart_uploads(s3_server, "models/") == []
    assert pipeline.failed_runs(submission_id)


@pytest.fixture
def large_artifact(tmp_path: Path) -> Path:
    """An artifact folder whose weights (40 MiB) go up in three multipart parts."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (folder / WEIGHTS_FILENAME).write_bytes(uuid.uuid4().bytes * (40 * 1024**2 // 16))
    return folder


def test_a_multipart_upload_cut_off_after_its_first_part_is_aborted_and_cleaned_up(s3_server, large_artifact):
    digest = uuid.uuid4().hex
    prefix = artifact_prefix(s3_server.bucket, digest)
    outage = S3Outage({"UploadPart"}, healthy_calls=1)
    client = outage.attach(s3_server.client())

    with pytest.raises(S3CacheError, match="Could not connect to the endpoint URL"):
        upload_artifact(client, s3_server.bucket, large_artifact, digest)

    assert outage.failures["UploadPart"] >= 4  # every later part tried 4 times (max_attempts=3 retries)
    assert _multipart_uploads(s3_server, prefix) == []
    assert not {key for key in model_object_keys(s3_server) if key.startswith(prefix)}
    # S3 is back: the next attempt uploads the whole artifact.
    cached = upload_artifact(s3_server.client(), s3_server.bucket, large_artifact, digest)
    assert not cached.reused and cached.uploaded_bytes == cached.total_bytes
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=prefix + WEIGHTS_FILENAME)
    assert head["ContentLength"] == (large_artifact / WEIGHTS_FILENAME).stat().st_size


def test_a_resumed_upload_leaves_no_multipart_upload_of_the_failed_attempt_behind(s3_server, large_artifact):
    digest = uuid.uuid4().hex
    prefix = artifact_prefix(s3_server.bucket, digest)
    # S3 goes away after the first part and stays away while the failed upload tries to clean up.
    outage = S3Outage({"UploadPart", "AbortMultipartUpload", "DeleteObject", "PutObject"}, healthy_calls=2)
    with pytest.raises(S3CacheError):
        upload_artifact(outage.attach(s3_server.client()), s3_server.bucket, large_artifact, digest)
    assert _multipart_uploads(s3_server, prefix), "the outage should have stranded a multipart upload"

    upload_artifact(s3_server.client(), s3_server.bucket, large_artifact, digest)

    assert _multipart_uploads(s3_server, prefix) == []


# ---------------------------------------------------------------------------------------------------------
# The inference server during the stress check
# ---------------------------------------------------------------------------------------------------------

# A stand-in inference server: healthy, but its completions succeed ("ok": a reply of its own to each
# prompt), kill the process ("crash"), never answer ("hang") or stream nothing but whitespace ("empty", as
# a model with broken weights does). Run as `python -c FAKE_SERVER MODE PORT`.
FAKE_SERVER = r"""
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE, PORT = sys.argv[1], int(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        prompt = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))).get("prompt", "")
        if MODE == "crash":
            os._exit(3)
        if MODE == "hang":
            time.sleep(3600)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(4):
            text = " " if MODE == "empty" else f" reply{abs(hash(prompt)) % 100000}-{i}"
            chunk = {"choices": [{"index": 0, "text": text}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"choices": [], "usage": {"completion_tokens": 4}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"""


class FakeServerDeployer(LocalProcessDeployer):
    """The local deployer, starting the stand-in server instead of vLLM (records and teardown are real)."""

    def __init__(self, state_dir: Path, mode: str) -> None:
        super().__init__(
            state_dir, "http://127.0.0.1:9", "unused", "unused", smoke_test=False, startup_timeout_s=30
        )
        self.mode = mode

    def serve_command(self, spec: DeploymentSpec, port: int) -> list[str]:
        return [sys.executable, "-c", FAKE_SERVER, self.mode, str(port)]


def _deployed_on_fake_server(
    pipeline: InProcessPipeline, mode: str, stage: Status = Status.DEPLOYING
) -> tuple[str, int]:
    """A submission that reached `stage` with the stand-in server running for it; returns (id, server pid)."""
    submission_id = pipeline.submit(f"faults/{mode}-model")
    deployment = FakeServerDeployer(pipeline.settings.servers_dir, mode).deploy(
        DeploymentSpec(submission_id, "s3://unused/", submission_id)
    )
    with pipeline.store.session() as session:
        walk_to(session, submission_id, stage)
        submission = get_submission(session, submission_id)
        submission.artifact_uri = "s3://unused/"
        submission.endpoint_url, submission.served_model_name = deployment.endpoint_url, submission_id
    return submission_id, deployment.details["pid"]


@pytest.mark.parametrize(
    ("mode", "cause"),
    [("crash", "all 4 requests failed"), ("hang", "ReadTimeout")],
)
def test_an_inference_server_that_crashes_or_hangs_in_the_stress_check_is_torn_down_and_failed(
    hub_server, s3_server, tmp_path, mode, cause
):
    # A 2 s request timeout in the stress test (production: 60 s).
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server, stress_timeout_s=2.0)
    submission_id, pid = _deployed_on_fake_server(pipeline, mode)
    try:
        result = pipeline.run(submission_id, selection=[latency_report])
    finally:
        stopped = pipeline.deployer().teardown_all() == 0
    assert stopped, "latency_report should have torn the server down itself"

    assert not result.success  # the blocking SLO check fails the step
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.FAILED
    assert outcome.failure_reason.startswith("latency SLO not met: all 4 requests failed")
    assert cause in outcome.failure_reason
    # A crashed server no longer answers its health check, and the reason says so.
    assert ("the model server stopped answering" in outcome.failure_reason) == (mode == "crash")
    assert process_start_ticks(pid) is None and pipeline.recorded_servers() == []
    assert pipeline.failed_runs(submission_id)


def test_a_model_whose_replies_are_empty_fails_the_output_gate_before_it_reaches_users(
    hub_server, s3_server, tmp_path
):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    submission_id, pid = _deployed_on_fake_server(pipeline, "empty")
    try:
        result = pipeline.run(submission_id, selection=[latency_report])
    finally:
        pipeline.deployer().teardown_all()

    assert not result.success  # the blocking SLO check fails the step
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.FAILED
    assert outcome.failure_reason == "latency SLO not met: 4 of 4 replies were empty"
    assert process_start_ticks(pid) is None and pipeline.recorded_servers() == []


# ---------------------------------------------------------------------------------------------------------
# The run process killed mid-pipeline: the reconciler
# ---------------------------------------------------------------------------------------------------------


def _pipeline_run(pipeline: InProcessPipeline, submission_id: str, status: DagsterRunStatus) -> DagsterRun:
    """A run of the submission pipeline job for the partition, as the daemon would have recorded it."""
    return pipeline.instance.add_run(
        DagsterRun(
            job_name=submission_pipeline_job.name,
            run_id=str(uuid.uuid4()),
            status=status,
            tags={"dagster/partition": submission_id},
        )
    )


def _reconcile(pipeline: InProcessPipeline, minutes_later: float, max_resumes: int = 1):
    return reconcile(
        pipeline.store,
        pipeline.deployer(),
        ReconcilerSettings(stale_after_s=300, max_resumes=max_resumes),
        has_run_in_flight=lambda sid: has_pipeline_run_in_flight(pipeline.instance, sid),
        staging=StagingLayout(pipeline.settings.work_dir),
        now=utcnow() + timedelta(minutes=minutes_later),
    )


def _about(submission_id: str, decisions: list) -> list:
    """The reconciler's decisions about one submission."""
    return [decision for decision in decisions if decision.submission_id == submission_id]


def _in_stage(pipeline: InProcessPipeline, stage: Status, **fields: str) -> str:
    submission_id = pipeline.submit(f"faults/stuck-in-{stage}")
    with pipeline.store.session() as session:
        walk_to(session, submission_id, stage)
        submission = get_submission(session, submission_id)
        for name, value in fields.items():
            setattr(submission, name, value)
    return submission_id


def test_the_reconciler_leaves_alone_submissions_with_a_run_in_flight_or_recent_progress(
    hub_server, s3_server, tmp_path
):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    running = _in_stage(pipeline, Status.DOWNLOADING)
    starting = _in_stage(pipeline, Status.DEPLOYING, artifact_uri="s3://b/models/x/")
    _pipeline_run(pipeline, running, DagsterRunStatus.STARTED)
    _pipeline_run(pipeline, starting, DagsterRunStatus.STARTING)
    abandoned = _in_stage(pipeline, Status.DOWNLOADING)  # no run at all

    assert _reconcile(pipeline, minutes_later=1).resumed == []  # nothing is stale yet
    result = _reconcile(pipeline, minutes_later=10)

    assert sorted(result.skipped_running) == sorted([running, starting])
    assert [d.submission_id for d in result.resumed] == [abandoned]
    for submission_id in (running, starting):
        assert RESUME_MESSAGE not in " ".join(pipeline.outcome(submission_id).events)


@pytest.mark.parametrize("store_backend", ["sqlite", "postgres"])
def test_a_run_killed_mid_pipeline_is_resumed_once_then_failed_with_a_reason(
    hub_server, s3_server, tmp_path, store_backend, request
):
    overrides = {}
    if store_backend == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server, **overrides)
    submission_id = _in_stage(pipeline, Status.DEPLOYING, artifact_uri="s3://b/models/x/")
    _pipeline_run(pipeline, submission_id, DagsterRunStatus.CANCELED)  # e.g. the run worker was lost

    first = _reconcile(pipeline, minutes_later=10)
    # The PostgreSQL store is shared by the session's tests: look at this submission's decisions only.
    (resume,) = _about(submission_id, first.resumed)
    assert resume.run_key == f"{submission_id}#resume-1" and resume.stage == Status.DEPLOYING
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.DEPLOYING
    assert outcome.events[-1].startswith(f"deploying: {RESUME_MESSAGE}: the pipeline stopped unexpectedly")
    # The resume stamped the row: the next pass within the threshold leaves it to the resumed run.
    assert _about(submission_id, _reconcile(pipeline, minutes_later=12).resumed) == []

    second = _reconcile(pipeline, minutes_later=30)  # the resumed run never got anywhere either
    (failure,) = _about(submission_id, second.failed)
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.FAILED
    assert outcome.failure_reason == (
        "the pipeline stopped unexpectedly during deploying (resumed 1 time(s) already); "
        f"resubmit or redeploy (`guanaco redeploy {submission_id}`)"
    )


def test_a_stage_interrupted_by_a_platform_stop_fails_nothing_and_is_resumed_at_once(
    hub_server, s3_server, tmp_path
):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    submission_id = _in_stage(pipeline, Status.UPLOADING, artifact_uri="s3://b/models/x/")
    with pipeline.store.session() as session:
        transition(session, submission_id, Status.DEPLOYING)
    context = build_asset_context(partition_key=submission_id)
    with (
        pytest.raises(DagsterExecutionInterruptedError),
        submission_stage(context, pipeline.store, Status.DEPLOYING, Leftovers()),
    ):
        raise DagsterExecutionInterruptedError()  # what a run worker raises when it gets SIGTERM
    outcome = pipeline.outcome(submission_id)
    assert outcome.status == Status.DEPLOYING and outcome.failure_reason is None
    assert outcome.events[-1] == f"deploying: {INTERRUPTED_MESSAGE}"
    _pipeline_run(pipeline, submission_id, DagsterRunStatus.FAILURE)

    # No waiting for staleness: the next reconciler pass resumes it, and it costs no resume.
    (resume,) = _reconcile(pipeline, minutes_later=0).resumed
    assert resume.run_key == f"{submission_id}#resume-1"
    assert resume.reason == "the platform restarted during deploying; resuming where it stopped"
    (later,) = _reconcile(pipeline, minutes_later=10).resumed  # the resumed run got nowhere either
    assert later.run_key == f"{submission_id}#resume-2"
    assert pipeline.outcome(submission_id).status == Status.DEPLOYING


def test_a_stage_whose_staged_files_are_gone_is_failed_instead_of_resumed(hub_server, s3_server, tmp_path):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    submission_id = _in_stage(pipeline, Status.TENSORIZING)  # its download lived on a pod that is gone

    result = _reconcile(pipeline, minutes_later=10)

    assert [d.submission_id for d in result.failed] == [submission_id]
    assert pipeline.outcome(submission_id).failure_reason == (
        "the pipeline stopped unexpectedly during tensorizing and the downloaded weights it was tensorizing "
        f"are gone; resubmit or redeploy (`guanaco redeploy {submission_id}`)"
    )


def test_a_stale_pending_submission_gets_a_new_run_key_from_the_submission_sensor(
    hub_server, s3_server, tmp_path
):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    submission_id = pipeline.submit("faults/never-started")
    _pipeline_run(pipeline, submission_id, DagsterRunStatus.CANCELED)

    (resume,) = _reconcile(pipeline, minutes_later=10).resumed

    assert resume.run_key is None  # the submission sensor requests it: a new trip through `pending`
    with pipeline.store.session() as session:
        (pending,) = [p for p in pending_submissions(session) if p.id == submission_id]
    assert pending.run_key == f"{submission_id}#2"


def test_servers_of_failed_submissions_are_torn_down_and_deployed_ones_kept(hub_server, s3_server, tmp_path):
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    failed, failed_pid = _deployed_on_fake_server(pipeline, "ok", Status.STRESS_TESTING)
    serving, serving_pid = _deployed_on_fake_server(pipeline, "ok", Status.STRESS_TESTING)
    try:
        with pipeline.store.session() as session:
            # The run died after failing the submission but before it stopped the server.
            mark_failed(session, failed, "latency SLO not met")
            transition(session, serving, Status.DEPLOYED)

        result = _reconcile(pipeline, minutes_later=0)

        assert result.torn_down == [failed]
        assert process_start_ticks(failed_pid) is None
        assert process_start_ticks(serving_pid) is not None
        assert pipeline.deployer().list_submission_ids() == [serving]
    finally:
        pipeline.deployer().teardown_all()


def _evaluate_reconciler_sensor(pipeline: InProcessPipeline) -> SensorResult | SkipReason:
    with build_sensor_context(instance=pipeline.instance, resources=pipeline.resources) as context:
        return reconciler_sensor(context)


def test_the_reconciler_sensor_resumes_an_interrupted_upload_from_the_upload(
    hub_server, s3_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("GUANACO_RECONCILER_STALE_AFTER_S", "0.2")
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    submission_id = pipeline.submit(hub_server.repo_id)
    assert pipeline.run(submission_id, selection=[raw_weights, tensorized_artifact]).success
    with pipeline.store.session() as session:
        start_stage(session, submission_id, Status.UPLOADING)  # cached_s3_object began …
    killed = _pipeline_run(pipeline, submission_id, DagsterRunStatus.STARTED)  # … and its process died
    assert isinstance(_evaluate_reconciler_sensor(pipeline), SkipReason)  # the run still looks alive
    pipeline.instance.report_run_canceled(killed)  # run monitoring gives up on it
    time.sleep(0.3)

    result = _evaluate_reconciler_sensor(pipeline)

    (run_request,) = result.run_requests
    assert isinstance(run_request, RunRequest)
    assert run_request.run_key == f"{submission_id}#resume-1"
    assert run_request.partition_key == submission_id
    assert [key.path[-1] for key in run_request.asset_selection] == [
        "cached_s3_object",
        "live_deployment",
        "latency_report",
    ]
    # Carry out the resumed run's first step (the rest would start vLLM): the upload completes.
    assert pipeline.run(submission_id, selection=run_request.asset_selection[:1]).success
    with pipeline.store.session() as session:
        assert get_submission(session, submission_id).artifact_uri.startswith(
            f"s3://{s3_server.bucket}/models/"
        )


def test_the_reconciler_sensor_resumes_an_interrupted_stress_test_to_deployed(
    hub_server, s3_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("GUANACO_RECONCILER_STALE_AFTER_S", "0.2")
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    submission_id, _pid = _deployed_on_fake_server(pipeline, "ok", Status.STRESS_TESTING)
    try:
        _pipeline_run(pipeline, submission_id, DagsterRunStatus.CANCELED)
        time.sleep(0.3)
        (run_request,) = _evaluate_reconciler_sensor(pipeline).run_requests
        assert [key.path[-1] for key in run_request.asset_selection] == ["latency_report"]

        assert pipeline.run(submission_id, selection=run_request.asset_selection).success
        assert pipeline.outcome(submission_id).status == Status.DEPLOYED
    finally:
        pipeline.deployer().teardown_all()


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL under the service
# ---------------------------------------------------------------------------------------------------------


def _admin(sql: str, *params: object) -> None:
    connection = psycopg2.connect(POSTGRES_ADMIN_DSN)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    finally:
        connection.close()


def _drop_service_connections(database: str) -> None:
    _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        database,
    )


def _statuses(service, requests: int) -> list[int]:
    with service.client(service.alice_key) as client:
        return [client.get("/models/" if i % 2 else "/health").status_code for i in range(requests)]


@pytest.mark.postgres
def test_dropped_database_connections_are_replaced_without_a_single_error(service):
    database = make_url(service.store.url).database
    assert set(_statuses(service, 4)) == {200}  # the pool holds connections now

    _drop_service_connections(database)

    statuses = _statuses(service, 10)
    assert 500 not in statuses
    assert set(statuses) == {200}  # pool_pre_ping notices the dead connections and opens new ones


@pytest.mark.postgres
def test_a_database_that_refuses_connections_gets_503_and_the_service_recovers(service):
    database = make_url(service.store.url).database
    _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        _drop_service_connections(database)
        statuses = _statuses(service, 6)
        with service.client(service.alice_key) as client:
            answer = client.get("/models/")
    finally:
        _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

    assert set(statuses) == {503}
    assert answer.json() == {"detail": "the database is unavailable; try again shortly"}
    deadline = time.monotonic() + 10
    while (statuses := _statuses(service, 2)) != [200, 200] and time.monotonic() < deadline:
        assert 500 not in statuses
        time.sleep(0.2)
    assert statuses == [200, 200]
    assert httpx.get(f"{service.url}/health", timeout=5).json() == {"status": "ok"}
