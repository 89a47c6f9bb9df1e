"""The runs the service launches through the webserver are the ones the sensors would request."""

from __future__ import annotations

import time

from dagster import AssetKey, DagsterInstance, build_sensor_context

from guanaco_dagster.definitions import build_definitions
from guanaco_dagster.ports import free_port
from guanaco_dagster.service.dagster_runs import (
    FEEDBACK_BATCH_JOB,
    FEEDBACK_BATCH_OP,
    SUBMISSION_PIPELINE_JOB,
    SUBMISSION_RUN_ASSETS,
    SUBMISSION_SENSOR,
    SUBMISSIONS_PARTITIONS,
    DagsterRuns,
)
from guanaco_dagster.service.run_launches import launch_submission_now
from guanaco_dagster.settings import Settings
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.submissions import (
    PendingSubmission,
    SubmissionRequest,
    create_submission,
    pending_submissions,
)
from resources import StoreResource
from sensors.submission_sensor import submission_sensor


def test_the_names_the_service_launches_by_are_the_code_locations(tmp_path):
    repository = build_definitions(Settings(home=tmp_path)).get_repository_def()
    assert repository.get_sensor_def(SUBMISSION_SENSOR).job_name == SUBMISSION_PIPELINE_JOB
    assert SUBMISSIONS_PARTITIONS in {
        p.name for p in [repository.get_job(SUBMISSION_PIPELINE_JOB).partitions_def] if p is not None
    }
    assert FEEDBACK_BATCH_OP in {node.name for node in repository.get_job(FEEDBACK_BATCH_JOB).nodes}


def test_the_service_launches_the_run_the_submission_sensor_would_request(sqlite_store):
    with sqlite_store.session() as session:
        developer = get_or_create_developer(session, "ada")
        submission_id = create_submission(session, developer, SubmissionRequest(model_repo="org/m")).id
        (pending,) = pending_submissions(session)
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(
            instance=instance, resources={"store": StoreResource(database_url=sqlite_store.url)}
        )
        (request,) = submission_sensor(context).run_requests

    # What launch_submission_run sends: the same key, partition, assets and submission tag.
    assert request.run_key == pending.run_key == submission_id
    assert request.partition_key == submission_id
    assert request.tags["guanaco/submission"] == submission_id
    expected = None if request.asset_selection is None else [AssetKey(name) for name in SUBMISSION_RUN_ASSETS]
    assert request.asset_selection == expected


def test_an_unreachable_webserver_leaves_the_run_to_the_sensor_and_is_not_asked_again_at_once():
    runs = DagsterRuns(f"http://127.0.0.1:{free_port()}/graphql")
    pending = PendingSubmission(seq=1, id="org-m_v1", attempt=1)

    assert launch_submission_now(runs, pending) is None
    started = time.monotonic()
    assert launch_submission_now(runs, pending) is None
    assert time.monotonic() - started < 0.1  # backing off: no second connection attempt


def test_without_a_webserver_configured_nothing_is_launched():
    assert launch_submission_now(None, PendingSubmission(seq=1, id="org-m_v1", attempt=1)) is None
