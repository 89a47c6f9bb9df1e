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


def _batch_of(result) -> list[str]:
    (request,) = result.run_requests
    return request.run_config["ops"]["summarise_feedback"]["config"]["submission_ids"]


def test_new_feedback_requests_one_batch_run_for_every_stale_summary(store):
    first = _deployed_with_feedback(store, "org/a", 2)
    second = _deployed_with_feedback(store, "org/b", 1)
    with DagsterInstance.ephemeral() as instance:
        result, _ = _run_sensor(feedback_sensor, store, instance)
    assert sorted(_batch_of(result)) == sorted([first, second])
    (request,) = result.run_requests
    assert isinstance(request, RunRequest) and request.run_key == "feedback-batch-1"
    assert result.cursor == "1"


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
        result, _ = _run_sensor(feedback_sensor, store, instance, cursor="7")
    assert _batch_of(result) == [submission_id]
    assert result.run_requests[0].run_key == "feedback-batch-8"
    assert result.run_requests[0].tags["guanaco/submission"] == submission_id


def test_a_batch_is_bounded_and_takes_the_longest_waiting_summaries_first(sqlite_store, monkeypatch):
    import sys

    # The package exports the sensor under the module's name, so reach the module itself.
    monkeypatch.setattr(sys.modules["sensors.feedback_sensor"], "FEEDBACK_BATCH_MAX", 2)
    ids = [_deployed_with_feedback(sqlite_store, f"org/m{i}", 1) for i in range(3)]
    with sqlite_store.session() as session:
        # ids[2] was summarised long ago, ids[0] just now; ids[1] never: never-summarised waits longest.
        for submission_id in (ids[2], ids[0]):
            save_feedback_report(session, submission_id, build_feedback_report(session, submission_id, b"k"))
    for submission_id in ids:
        with sqlite_store.session() as session:
            conversation = start_conversation(session, user_id="more", submission_id=submission_id)
            leave_feedback(session, conversation.id, thumbs_up=True)
    with DagsterInstance.ephemeral() as instance:
        result, _ = _run_sensor(feedback_sensor, sqlite_store, instance)
    assert _batch_of(result) == [ids[1], ids[2]]


def test_nothing_more_is_requested_while_a_batch_is_in_flight(sqlite_store):
    from dagster import DagsterRunStatus

    from sensors.jobs import summarise_feedback_batch

    _deployed_with_feedback(sqlite_store, "org/a", 1)
    with DagsterInstance.ephemeral() as instance:
        run = instance.create_run_for_job(
            summarise_feedback_batch,
            run_config={"ops": {"summarise_feedback": {"config": {"submission_ids": []}}}},
            status=DagsterRunStatus.STARTED,
        )
        waiting, _ = _run_sensor(feedback_sensor, sqlite_store, instance, cursor="1")
        assert isinstance(waiting, SkipReason) and "in flight" in waiting.skip_message
        instance.report_run_failed(run)
        resumed, _ = _run_sensor(feedback_sensor, sqlite_store, instance, cursor="1")
    assert resumed.run_requests[0].run_key == "feedback-batch-2"


def test_a_batch_run_stores_each_summary_and_materialises_its_partition(sqlite_store, tmp_path):
    from dagster import AssetKey

    from resources import PrivacyResource
    from resources.feedback_categories import FeedbackCategoryResource
    from sensors.jobs import summarise_feedback_batch

    ids = [_deployed_with_feedback(sqlite_store, f"org/s{i}", i + 1) for i in range(3)]
    with DagsterInstance.ephemeral() as instance:
        result = summarise_feedback_batch.execute_in_process(
            run_config={"ops": {"summarise_feedback": {"config": {"submission_ids": ids}}}},
            instance=instance,
            resources={
                "store": StoreResource(database_url=sqlite_store.url),
                "privacy": PrivacyResource(home=str(tmp_path)),
                "feedback_categories": FeedbackCategoryResource(),
            },
        )
        assert result.success
        materialized = {
            event.partition: event.metadata["feedback_count"].value
            for event in result.asset_materializations_for_node("summarise_feedback")
        }
        latest = instance.get_latest_materialization_event(AssetKey("feedback_summary"))
        assert set(instance.get_dynamic_partitions("submissions")) == set(ids)
    assert materialized == {ids[0]: 1, ids[1]: 2, ids[2]: 3}
    assert latest is not None and latest.asset_materialization.partition == ids[2]
    with sqlite_store.session() as session:
        from guanaco_dagster.feedback.feedback_report import submissions_with_new_feedback

        assert submissions_with_new_feedback(session) == {}
