"""One failure path: whoever fails a submission, it ends `failed` with nothing of it left behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, build_run_status_sensor_context
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.storage.tags import WILL_RETRY_TAG

from guanaco_dagster.stages.s3_cache import delete_artifact, upload_artifact
from guanaco_dagster.stages.staging import StagingLayout
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.failure import Leftovers, fail_submission
from guanaco_dagster.submissions.handoff import read_handoff, record_handoff
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import (
    SubmissionRequest,
    create_submission,
    get_submission,
    transition,
)
from inference.artifact import WEIGHTS_FILENAME
from resources import DeployerResource, PipelineConfigResource, StoreResource
from resources.s3_cache import S3CacheResource, S3ClientResource
from sensors.failure_sensor import pipeline_failure_sensor
from sensors.jobs import submission_pipeline_job
from tests.fixtures.pipeline import model_object_keys
from tests.fixtures.store import walk_to


def _artifact(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (folder / WEIGHTS_FILENAME).write_bytes(uuid.uuid4().bytes * 64)
    return folder, uuid.uuid4().hex


def _submission_at(store, developer, stage: Status, digest: str) -> str:
    with store.session() as session:
        submission_id = create_submission(
            session, developer, SubmissionRequest(model_repo=f"org/m-{uuid.uuid4().hex[:6]}")
        ).id
        walk_to(session, submission_id, stage)
        record_handoff(session, submission_id, artifact_sha256=digest)
    return submission_id


def _cache(s3_server):
    client = s3_server.client()
    return lambda digest: delete_artifact(client, s3_server.bucket, digest)


def test_a_failed_submission_leaves_no_artifact_unless_a_live_one_shares_it(
    store, developer, s3_server, tmp_path
):
    folder, digest = _artifact(tmp_path)
    cached = upload_artifact(s3_server.client(), s3_server.bucket, folder, digest)
    prefix = cached.uri.split(f"s3://{s3_server.bucket}/", 1)[1]
    serving = _submission_at(store, developer, Status.STRESS_TESTING, digest)
    with store.session() as session:
        transition(session, serving, Status.DEPLOYED)
    failing = _submission_at(store, developer, Status.STRESS_TESTING, digest)
    staging = StagingLayout(tmp_path / "work")
    staging.tensorized_dir(failing).mkdir(parents=True)
    leftovers = Leftovers(staging=staging, delete_artifact=_cache(s3_server))

    assert fail_submission(store, failing, "latency SLO not met: p95 latency 12.00 s > 10.00 s", leftovers)

    assert any(key.startswith(prefix) for key in model_object_keys(s3_server))  # the deployed one uses it
    assert not staging.submission_dir(failing).exists()
    with store.session() as session:
        assert get_submission(session, failing).status == Status.FAILED

    assert fail_submission(store, serving, "the model server stopped answering", leftovers)

    assert not any(key.startswith(prefix) for key in model_object_keys(s3_server))


def test_failing_asks_the_caller_first_under_the_row_lock(store, developer):
    submission_id = _submission_at(store, developer, Status.STRESS_TESTING, "d" * 64)
    with store.session() as session:
        transition(session, submission_id, Status.DEPLOYED)

    failed = fail_submission(
        store, submission_id, "late failure", Leftovers(), unless=lambda s: s.status == Status.DEPLOYED
    )

    assert failed is False
    with store.session() as session:
        assert get_submission(session, submission_id).status == Status.DEPLOYED


def test_stages_hand_on_only_what_they_produce(store, developer):
    submission_id = _submission_at(store, developer, Status.DOWNLOADING, "e" * 64)
    with store.session() as session:
        record_handoff(session, submission_id, resolved_revision="a" * 40)
        with pytest.raises(ValueError, match="stages cannot record \\['model_repo'\\]"):
            record_handoff(session, submission_id, model_repo="org/other")
    with store.session() as session:
        handoff = read_handoff(session, submission_id)
    assert handoff.resolved_revision == "a" * 40 and handoff.artifact_sha256 == "e" * 64


def test_the_failure_sensor_leaves_a_run_dagster_will_retry_to_dagster(sqlite_store, tmp_path):
    with sqlite_store.session() as session:
        developer = get_or_create_developer(session, "ada")
    submission_id = _submission_at(sqlite_store, developer, Status.DEPLOYING, "f" * 64)
    resources = {
        "store": StoreResource(database_url=sqlite_store.url),
        "deployer": DeployerResource(state_dir=str(tmp_path / "servers")),
        "s3_cache": S3CacheResource(s3=S3ClientResource(endpoint_url="http://127.0.0.1:1"), bucket="b"),
        "pipeline": PipelineConfigResource(work_dir=str(tmp_path / "work")),
    }

    def evaluate(tags: dict[str, str]) -> str:
        with DagsterInstance.ephemeral() as instance:
            run = instance.add_run(
                DagsterRun(
                    job_name=submission_pipeline_job.name,
                    run_id=str(uuid.uuid4()),
                    status=DagsterRunStatus.FAILURE,
                    tags={"dagster/partition": submission_id, **tags},
                )
            )
            event = DagsterEvent(
                event_type_value=DagsterEventType.PIPELINE_FAILURE.value,
                job_name=run.job_name,
                message="the run worker exited unexpectedly",
            )
            with build_run_status_sensor_context(
                sensor_name=pipeline_failure_sensor.name,
                dagster_instance=instance,
                dagster_run=run,
                dagster_event=event,
                resources=resources,
            ) as context:
                pipeline_failure_sensor(context.for_run_failure())
        with sqlite_store.session() as session:
            return get_submission(session, submission_id).status

    assert evaluate({WILL_RETRY_TAG: "true"}) == Status.DEPLOYING
    assert evaluate({WILL_RETRY_TAG: "false"}) == Status.FAILED
