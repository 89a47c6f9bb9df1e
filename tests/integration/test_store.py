"""The store on SQLite and PostgreSQL: submissions, their lifecycle and stage timings, keys, feedback."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from dagster import Failure, build_asset_context
from sqlalchemy import inspect, select

from assets.stage import submission_stage
from guanaco_dagster.beta.conversations import ConversationError, leave_feedback, start_conversation
from guanaco_dagster.stages.staging import StagingLayout
from guanaco_dagster.store.database import engine_for
from guanaco_dagster.store.models import Developer, Feedback, SubmissionEvent
from guanaco_dagster.submissions.developers import create_developer, developer_for_key, hash_key
from guanaco_dagster.submissions.failure import Leftovers
from guanaco_dagster.submissions.lifecycle import InvalidTransition, Status
from guanaco_dagster.submissions.submissions import (
    SubmissionRequest,
    create_submission,
    get_submission,
    mark_failed,
    pending_submissions,
    transition,
)
from guanaco_dagster.submissions.waterfall import stage_waterfall


def _submit(store, developer, repo="org/Tiny-Model", **fields):
    with store.session() as session:
        return create_submission(session, developer, SubmissionRequest(model_repo=repo, **fields))


def test_migrations_create_every_table(store):
    tables = set(inspect(engine_for(store.url)).get_table_names())
    assert {
        "developers",
        "submissions",
        "submission_events",
        "stage_timings",
        "conversations",
        "messages",
        "feedback",
        "feedback_summaries",
        "latency_reports",
        "alembic_version",
    } <= tables


def test_migrating_twice_is_harmless(store):
    store.migrate()
    store.migrate()


def test_developer_keys_are_stored_only_as_hashes(store):
    with store.session() as session:
        developer, key = create_developer(session, "grace")
    with store.session() as session:
        stored = session.scalar(select(Developer).where(Developer.name == "grace"))
        assert stored.key_hash == hash_key(key) and key not in stored.key_hash
        assert developer_for_key(session, key).id == developer.id
        assert developer_for_key(session, key + "x") is None


def test_submission_starts_pending_with_chai_style_ids(store, developer):
    first = _submit(store, developer, hf_revision="v2")
    second = _submit(store, developer)
    assert (first.id, second.id) == ("org-tiny-model_v1", "org-tiny-model_v2")
    with store.session() as session:
        stored = get_submission(session, first.id)
        assert stored.status == Status.PENDING and stored.requested_revision == "v2"
        assert stored.generation_params["temperature"] == 1.0
        assert "{memory}" in stored.formatter["memory_template"]


def test_concurrent_submissions_of_one_repo_get_distinct_ids(store, developer):
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: _submit(store, developer).id, range(8)))
    assert len(set(ids)) == 8


def test_a_new_submission_is_invisible_to_others_until_its_request_commits(store, developer):
    # The service launches the submission's run between the two: the submission sensor must not see the row
    # before that run exists, or it launches a second one (SQLite committed at the end of a savepoint).
    with store.session() as session:
        submission = create_submission(session, developer, SubmissionRequest(model_repo="org/uncommitted"))
        with store.session() as other:
            assert pending_submissions(other) == []
    with store.session() as other:
        assert [pending.id for pending in pending_submissions(other)] == [submission.id]


def test_a_request_that_fails_after_creating_a_submission_leaves_nothing(store, developer):
    with pytest.raises(RuntimeError, match="the launch failed"), store.session() as session:
        create_submission(session, developer, SubmissionRequest(model_repo="org/rolled-back"))
        raise RuntimeError("the launch failed")

    with store.session() as session:
        assert pending_submissions(session) == []


@pytest.mark.parametrize("repo", ["not-a-repo", "org/", "org/model/extra", "../etc/passwd", "org/..model"])
def test_malformed_repo_ids_are_refused_with_the_reason(repo):
    with pytest.raises(ValueError, match="not a Hugging Face repo id"):
        SubmissionRequest(model_repo=repo)


def test_pending_submissions_come_oldest_first(store, developer):
    ids = [_submit(store, developer, repo=f"org/m{i}").id for i in range(3)]
    with store.session() as session:
        transition(session, ids[1], Status.DOWNLOADING)
        assert [p.id for p in pending_submissions(session)] == [ids[0], ids[2]]


def test_illegal_transition_is_refused_and_status_kept(store, developer):
    submission = _submit(store, developer)
    with pytest.raises(InvalidTransition), store.session() as session:
        transition(session, submission.id, Status.DEPLOYED)
    with store.session() as session:
        assert get_submission(session, submission.id).status == Status.PENDING


def test_a_stage_is_timed_and_its_transition_logged(store, developer):
    submission = _submit(store, developer)
    context = build_asset_context(partition_key=submission.id)
    with submission_stage(context, store, Status.DOWNLOADING, Leftovers()):
        pass
    with store.session() as session:
        stored = get_submission(session, submission.id)
        (row,) = stage_waterfall(stored)
        assert row.stage == "downloading" and row.succeeded and row.duration_s >= 0
        assert [e.status for e in stored.events] == ["pending", "downloading"]


def test_a_failing_stage_fails_the_submission_and_the_step_with_the_reason(store, developer, tmp_path):
    submission = _submit(store, developer)
    staging = StagingLayout(tmp_path)
    staging.raw_dir(submission.id).mkdir(parents=True)
    context = build_asset_context(partition_key=submission.id)
    stage = submission_stage(context, store, Status.DOWNLOADING, Leftovers(staging=staging))
    with pytest.raises(Failure) as failure, stage:
        raise RuntimeError("revision 'v9' not found in org/tiny-model")
    assert failure.value.description == "downloading: revision 'v9' not found in org/tiny-model"
    assert not staging.submission_dir(submission.id).exists()  # the one failure path cleans up
    with store.session() as session:
        stored = get_submission(session, submission.id)
        assert stored.status == Status.FAILED
        assert stored.failure_reason == "downloading: revision 'v9' not found in org/tiny-model"
        assert stage_waterfall(stored)[0].succeeded is False


def test_failing_an_ended_submission_keeps_the_first_reason(store, developer):
    submission = _submit(store, developer)
    with store.session() as session:
        assert mark_failed(session, submission.id, "first reason")
        assert not mark_failed(session, submission.id, "second reason")
    with store.session() as session:
        assert get_submission(session, submission.id).failure_reason == "first reason"
        assert session.scalar(select(SubmissionEvent).where(SubmissionEvent.status == "failed")).message == (
            "first reason"
        )


def _deployed(store, developer, repo="org/model"):
    submission = _submit(store, developer, repo=repo)
    with store.session() as session:
        for stage in ["downloading", "tensorizing", "uploading", "deploying", "stress_testing", "deployed"]:
            transition(session, submission.id, Status(stage))
        get_submission(session, submission.id).endpoint_url = "http://127.0.0.1:9/v1"
    return submission


def test_feedback_retried_with_the_same_key_is_stored_once(store, developer):
    submission = _deployed(store, developer)
    with store.session() as session:
        conversation = start_conversation(session, user_id="u1", submission_id=submission.id)
    for _ in range(3):
        with store.session() as session:
            leave_feedback(session, conversation.id, thumbs_up=True, text="fun", idempotency_key="k-1")
    with store.session() as session:
        assert len(session.scalars(select(Feedback)).all()) == 1


def test_second_feedback_on_a_conversation_is_refused(store, developer):
    submission = _deployed(store, developer)
    with store.session() as session:
        conversation = start_conversation(session, user_id="u1", submission_id=submission.id)
        leave_feedback(session, conversation.id, thumbs_up=True)
    with pytest.raises(ConversationError, match="already has feedback"), store.session() as session:
        leave_feedback(session, conversation.id, thumbs_up=False)
