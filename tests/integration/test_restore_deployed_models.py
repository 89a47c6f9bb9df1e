"""After a platform start, a `deployed` model whose server is still alive is re-adopted as it is, and one
whose artifact is gone from the cache is failed with the cause instead of staying `deployed` without a
server."""

from __future__ import annotations

from pathlib import Path

import pytest

from guanaco_dagster.deployment.local_process import process_start_ticks
from guanaco_dagster.embedded.restore import restore_deployed_models
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Submission, SubmissionEvent
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import get_submission
from tests.fixtures.s3 import S3Info
from tests.fixtures.vllm import ServedModel, make_test_deployer

pytestmark = pytest.mark.vllm


def _deployed(store: Store, submission_id: str, artifact_uri: str, served_model_name: str) -> None:
    """A submission row that the pipeline left `deployed` (its endpoint forgotten by a platform stop)."""
    with store.session() as session:
        developer = get_or_create_developer(session, "restorer")
        session.add(
            Submission(
                id=submission_id,
                developer_id=developer.id,
                model_repo="org/model",
                model_name="model",
                status=Status.DEPLOYED,
                artifact_uri=artifact_uri,
                served_model_name=served_model_name,
            )
        )


def _events(store: Store, submission_id: str) -> list[str]:
    with store.session() as session:
        return [
            f"{e.status}: {e.message}"
            for e in session.query(SubmissionEvent).filter_by(submission_id=submission_id)
        ]


def test_a_model_whose_server_is_still_alive_is_re_adopted_not_restarted(
    sqlite_store: Store, served_tiny_model: ServedModel
):
    spec = served_tiny_model.spec
    _deployed(sqlite_store, spec.submission_id, spec.artifact_uri, spec.served_model_name)
    pid = served_tiny_model.deployment.details["pid"]
    ticks = process_start_ticks(pid)

    outcomes = restore_deployed_models(sqlite_store, served_tiny_model.deployer)

    assert outcomes == {spec.submission_id: "server re-adopted after a platform restart"}
    assert process_start_ticks(pid) == ticks
    with sqlite_store.session() as session:
        assert get_submission(session, spec.submission_id).endpoint_url == served_tiny_model.endpoint_url
    assert _events(sqlite_store, spec.submission_id) == [
        "deployed: server re-adopted after a platform restart"
    ]


def test_a_model_whose_artifact_left_the_cache_is_failed_with_the_cause(
    sqlite_store: Store, s3_server: S3Info, tmp_path: Path
):
    missing = f"s3://{s3_server.bucket}/models/{'0' * 64}/"
    _deployed(sqlite_store, "org-gone_v1", missing, "org-gone_v1")
    deployer = make_test_deployer(s3_server, tmp_path / "servers")

    outcomes = restore_deployed_models(sqlite_store, deployer)

    assert outcomes["org-gone_v1"].startswith("failed: inference server for 'org-gone_v1'")
    with sqlite_store.session() as session:
        submission = get_submission(session, "org-gone_v1")
        assert submission.status == Status.FAILED and submission.endpoint_url is None
        assert "while restarting its server after a platform restart" in submission.failure_reason
        assert submission.failure_reason.endswith("try `guanaco redeploy org-gone_v1`")
    assert deployer.list_submission_ids() == []
