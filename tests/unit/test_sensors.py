"""Sensors: new submissions become partitions and one run each; new feedback re-summarises its model."""

from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context

from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.feedback.feedback_report import build_feedback_report, save_feedback_report
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import (
    PendingSubmission,
    SubmissionRequest,
    create_submission,
    get_submission,
    transition,
)
from resources import StoreResource
from sensors.feedback_sensor import feedback_sensor
from sensors.submission_sensor import plan_submission_runs, submission_sensor


def _submit(store, repo):
    with store.session() as session:
        developer = get_or_create_developer(session, "ada")
        return create_submission(session, developer, SubmissionRequest(model_repo=repo)).id


def _run_sensor(sensor, store, instance, cursor=None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"store": StoreResource(database_url=store.url)}
    )
    return sensor(context), context


def test_no_pending_submissions_skips(sqlite_store):
    with DagsterInstance.ephemeral() as instance:
        result, _ = _run_sensor(submission_sensor, sqlite_store, instance)
    assert isinstance(result, SkipReason)


def test_new_submissions_become_partitions_with_one_run_each_keyed_by_id(store):
    ids = [_submit(store, "org/a"), _submit(store, "org/b")]
    with DagsterInstance.ephemeral() as instance:
        result, _ = _run_sensor(submission_sensor, store, instance)
    assert [r.run_key for r in result.run_requests] == ids
    assert [r.partition_key for r in result.run_requests] == ids
    (add_request,) = result.dynamic_partitions_requests
    assert list(add_request.partition_keys) == ids
    # Every pending row is requested each tick (run keys dedupe), so there is no cursor to skip rows with.
    assert result.cursor is None


def test_partitions_already_known_are_not_added_again():
    pending = [PendingSubmission(3, "a_v1", 1), PendingSubmission(5, "b_v1", 1)]
    assert plan_submission_runs(pending, {"a_v1"}) == ["b_v1"]


def test_a_redeployed_submission_gets_a_new_run_key(store):
    submission_id = _deployed_with_feedback(store, "org/a", 0)
    with store.session() as session:
        transition(session, submission_id, Status.INACTIVE)
        transition(session, submission_id, Status.PENDING)
    with DagsterInstance.ephemeral() as instance:
        result, _ = _run_sensor(submission_sensor, store, instance)
    assert [r.run_key for r in result.run_requests] == [f"{submission_id}#2"]


def test_submissions_already_in_the_pipeline_are_not_requested_again(store):
    started, waiting = _submit(store, "org/a"), _submit(store, "org/b")
    with store.session() as session:
        transition(session, started, Status.DOWNLOADING)
    with DagsterInstance.ephemeral() as instance:
        result, _ = _run_sensor(submission_sensor, store, instance)
    assert [r.run_key for r in result.run_requests] == [waiting]


def _deployed_with_feedback(store, repo, count):
    submission_id = _submit(store, repo)
    with store.session() as session:
        for stage in ["downloading", "tensorizing", "uploading", "deploying", "stress_testing", "deployed"]:
            transition(session, submission_id, Status(stage))
        get_submission(session, submission_id).endpoint_url = "http://127.0.0.1:9/v1"
    for i in range(count):
        with store.session() as session:
            conversation = start_conversation(session, user_id=f"u{i}", submission_id=submission_id)
            leave_feedback(session, conversation.id, thumbs_up=i % 2 == 0, text="fun")
    return submission_id


def test_new_feedback_requests_a_summary_run_per_submission_and_count(store):
    first = _deployed_with_feedback(store, "org/a", 2)
    second = _deployed_with_feedback(store, "org/b", 1)
    with DagsterInstance.ephemeral() as instance:
        result, _ = _run_sensor(feedback_sensor, store, instance)
    assert {(r.partition_key, r.run_key) for r in result.run_requests} == {
        (first, f"{first}@2"),
        (second, f"{second}@1"),
    }
    assert all(isinstance(r, RunRequest) for r in result.run_requests)


def test_up_to_date_summaries_request_nothing_until_more_feedback_arrives(store):
    submission_id = _deployed_with_feedback(store, "org/a", 2)
    with store.session() as session:
        save_feedback_report(session, submission_id, build_feedback_report(session, submission_id, b"key"))
    with DagsterInstance.ephemeral() as instance:
        skipped, _ = _run_sensor(feedback_sensor, store, instance)
        assert isinstance(skipped, SkipReason)
        with store.session() as session:
            conversation = start_conversation(session, user_id="late", submission_id=submission_id)
            leave_feedback(session, conversation.id, thumbs_up=True)
        result, _ = _run_sensor(feedback_sensor, store, instance)
    assert [r.run_key for r in result.run_requests] == [f"{submission_id}@3"]
