"""Load without loss: 50 concurrent beta clients post a few thousand feedback items (some retried, some sent
twice at once) to the real service on PostgreSQL; every accepted post is stored exactly once, and the
feedback sensor's logic summarises all of it."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from guanaco_dagster.beta import conversations
from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.feedback.feedback_report import (
    build_feedback_report,
    save_feedback_report,
    submissions_with_new_feedback,
)
from guanaco_dagster.store.models import Feedback
from guanaco_dagster.submissions.developers import create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission, transition
from guanaco_dagster.testing.soak import SoakConfig, SoakError, require_loopback, run_soak

CLIENTS = 50
FEEDBACK_POSTS = 2000
TIME_LIMIT_S = 60.0


def _feedback_counts(store) -> dict[str, int]:
    with store.session() as session:
        return dict(
            session.execute(
                select(Feedback.submission_id, func.count()).group_by(Feedback.submission_id)
            ).all()
        )


@pytest.fixture
def soak_target(service, served_tiny_model):
    """A deployed model to route beta users to: no chat is sent, but routing needs its server healthy."""
    submission_id = service.deployed_submission(
        service.alice_key,
        served_tiny_model.endpoint_url,
        served_tiny_model.served_model_name,
        "alice/soak-target",
    )
    yield submission_id
    with service.store.session() as session:
        transition(session, submission_id, Status.INACTIVE)  # out of routing for the tests that follow


@pytest.mark.postgres
@pytest.mark.vllm
def test_concurrent_feedback_with_retries_is_stored_exactly_once_and_fully_summarised(
    service, soak_target, capsys
):
    before = _feedback_counts(service.store)
    config = SoakConfig(
        base_url=service.url,
        beta_token=service.beta_token,
        clients=CLIENTS,
        feedback_posts=FEEDBACK_POSTS,
        max_duration_s=TIME_LIMIT_S,
    )

    report = run_soak(config, service.store)

    with capsys.disabled():
        print(
            f"\nsoak: {report.clients} clients, {report.accepted} accepted / {report.stored} stored, "
            f"{report.retries_sent} retries, {report.requests} requests in {report.wall_s:.1f} s "
            f"({report.feedback_per_s:.0f} feedback/s, {report.transient_errors} transient errors retried)"
        )
    assert report.errors == 0, report.error_samples  # transient errors were retried with the same key
    # On a loaded machine the time limit may end the soak early; what was accepted must still all be stored.
    assert report.accepted == FEEDBACK_POSTS or (report.stopped_by_time_limit and report.accepted >= 1000)
    assert report.stored == report.accepted  # nothing lost, nothing extra
    assert report.stored_more_than_once == 0
    assert report.inconsistent_answers == 0  # retries got the first post's id, and only one "stored: true"
    # Every retry was answered as already stored, even when it raced its twin.
    assert report.retries_sent > report.accepted // 10
    assert report.retries_refused == 0
    assert report.retries_acknowledged_as_stored_already == report.retries_sent
    assert soak_target in report.accepted_by_submission
    assert report.lossless

    # The feedback sensor's view: every submission with new feedback, counted in full, summarised in full.
    after = _feedback_counts(service.store)
    with service.store.session() as session:
        stale = submissions_with_new_feedback(session)
        for submission_id, accepted in report.accepted_by_submission.items():
            assert after[submission_id] - before.get(submission_id, 0) == accepted
            assert stale[submission_id] == after[submission_id]
            feedback_report = build_feedback_report(session, submission_id, b"key")
            assert feedback_report["summary"]["feedback_count"] == after[submission_id]
            save_feedback_report(session, submission_id, feedback_report)  # what feedback_summary stores
    with service.store.session() as session:
        assert not set(report.accepted_by_submission) & set(submissions_with_new_feedback(session))
        # A fresh model: only soak feedback.
        target = build_feedback_report(session, soak_target, b"key")["summary"]
        stored_thumbs_up = session.scalar(
            select(func.count()).where(
                Feedback.idempotency_key.like(f"{config.key_prefix}%"), Feedback.thumbs_up
            )
        )
    assert target["feedback_count"] == report.accepted_by_submission[soak_target]
    assert target["thumbs_up"] + target["thumbs_down"] == target["feedback_count"]
    assert stored_thumbs_up == report.accepted_thumbs_up


@pytest.mark.parametrize("url", ["http://10.0.0.5:8080", "https://guanaco.example.com", "http://0.0.0.0:80"])
def test_the_soak_refuses_anything_but_loopback(url):
    with pytest.raises(SoakError, match="only runs against loopback"):
        require_loopback(url)


@pytest.mark.postgres
def test_a_double_tapped_feedback_post_that_loses_the_race_is_acknowledged_not_refused(
    postgres_store, monkeypatch
):
    store = postgres_store
    with store.session() as session:
        developer, _key = create_developer(session, f"racer-{uuid.uuid4().hex[:8]}")
        submission = create_submission(session, developer, SubmissionRequest(model_repo="racer/model"))
        conversation_id = start_conversation(session, user_id="u", submission_id=submission.id).id
    key = "double-tap-1"
    real_lookup = conversations._feedback_with_key

    def lookup_then_twin_commits(session, idempotency_key):  # noqa: ANN001, ANN202
        found = real_lookup(session, idempotency_key)  # nothing yet …
        monkeypatch.setattr(conversations, "_feedback_with_key", real_lookup)
        with store.session() as twin:  # … and now the twin post commits
            leave_feedback(twin, conversation_id, thumbs_up=True, idempotency_key=idempotency_key)
        return found

    monkeypatch.setattr(conversations, "_feedback_with_key", lookup_then_twin_commits)
    with store.session() as session:
        feedback, created = leave_feedback(session, conversation_id, thumbs_up=True, idempotency_key=key)
    assert (created, feedback.idempotency_key) == (False, key)
