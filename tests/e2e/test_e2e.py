"""End to end with the real Dagster daemon and sensors: a submission row becomes a deployed model, a beta
user chats and leaves feedback, and the feedback sensor brings it into `feedback_summary`."""

from __future__ import annotations

import time

import pytest

from guanaco_dagster.beta.routing import deployed_candidates
from guanaco_dagster.embedded.platform import EmbeddedPlatform
from guanaco_dagster.store.database import Store
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.lifecycle import HAPPY_PATH, Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission, get_submission
from guanaco_dagster.submissions.waterfall import stage_waterfall
from guanaco_dagster.testing.beta_users import simulate_user
from guanaco_dagster.testing.watch import wait_for_outcome, wait_for_summary
from tests.fixtures.platform import embedded_settings

pytestmark = [pytest.mark.e2e, pytest.mark.vllm]

EXPECTED_EVENTS = [str(status) for status in HAPPY_PATH]


def test_submission_to_first_feedback_summary_through_the_daemon(hub_server, s3_server, tmp_path, capsys):
    settings = embedded_settings(tmp_path / "home", hub_server, s3_server)
    store = Store(settings.resolved_database_url)
    with EmbeddedPlatform(settings, hf_endpoint=hub_server.endpoint) as platform:
        with store.session() as session:
            developer = get_or_create_developer(session, "e2e")
            submission = create_submission(
                session, developer, SubmissionRequest(model_repo=hub_server.repo_id)
            )
            submission_id, submitted_at = submission.id, submission.created_at
        started = time.monotonic()

        status = wait_for_outcome(store, submission_id, timeout_s=600, health_check=platform.check_health)

        with store.session() as session:
            deployed = get_submission(session, submission_id)
            assert status == Status.DEPLOYED, deployed.failure_reason
            assert [event.status for event in deployed.events] == EXPECTED_EVENTS
            assert [row.stage for row in stage_waterfall(deployed)] == EXPECTED_EVENTS[1:-1]
            assert deployed.resolved_revision == hub_server.main_sha
            assert deployed.artifact_uri.startswith(f"s3://{s3_server.bucket}/models/")
            endpoint = deployed.endpoint_url
        assert platform.deployer().get(submission_id).endpoint_url == endpoint

        chat = simulate_user(store, user_index=1, turns=2)
        summary, summarised_at = wait_for_summary(store, submission_id, min_feedback=1, timeout_s=120)
        elapsed = time.monotonic() - started

    assert chat.submission_id == submission_id
    assert summary["summary"]["feedback_count"] == 1
    assert summary["summary"]["thumbs_down"] == (0 if chat.thumbs_up else 1)
    (sample,) = summary["sample_conversations"]
    assert sample["conversation_id"] == chat.conversation_id
    assert len(sample["messages"]) == 4
    # Stopping the platform stops the server and takes the model out of routing; it stays `deployed`, so
    # the next `guanaco up` brings it back without the developer doing anything.
    assert platform.deployer().list_submission_ids() == []
    with store.session() as session:
        stopped = get_submission(session, submission_id)
        assert stopped.status == Status.DEPLOYED and stopped.endpoint_url is None
        assert deployed_candidates(session) == []
    with capsys.disabled():
        print(
            f"\nsubmission → first feedback summary: {(summarised_at - submitted_at).total_seconds():.1f} s "
            f"(test wall clock {elapsed:.1f} s)"
        )
