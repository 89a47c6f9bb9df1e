"""The stress test, launched as the deployment starts, begins once the deployment succeeded and never before;
a failed deployment ends it with the submission's own reason; an interrupted one is waited for."""

from __future__ import annotations

import threading
import time

import pytest

from guanaco_dagster.store.database import Store
from guanaco_dagster.submissions.deployment_wait import DeploymentNotSucceeded, wait_for_deployment
from guanaco_dagster.submissions.failure import Leftovers, fail_submission
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import (
    SubmissionRequest,
    create_submission,
    finish_stage,
    get_submission,
    start_stage,
)
from tests.fixtures.store import walk_to


@pytest.fixture
def deploying(store: Store, developer) -> str:
    """A submission whose deployment has started."""
    with store.session() as session:
        submission_id = create_submission(session, developer, SubmissionRequest(model_repo="org/waits")).id
        walk_to(session, submission_id, Status.UPLOADING)
        start_stage(session, submission_id, Status.DEPLOYING)
    return submission_id


def _later(delay_s: float, action) -> threading.Thread:  # noqa: ANN001 - any callable
    def run() -> None:
        time.sleep(delay_s)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_stress_test_starts_only_once_the_deployment_succeeded(store: Store, deploying: str):
    def succeed() -> None:
        with store.session() as session:
            finish_stage(session, deploying, Status.DEPLOYING, succeeded=True)

    waits = []
    thread = _later(1.0, succeed)
    waited_s = wait_for_deployment(store, deploying, timeout_s=60, on_wait=lambda: waits.append(1))
    thread.join()

    assert waited_s >= 1.0
    assert waits == [1]
    with store.session() as session:
        assert get_submission(session, deploying).status == Status.DEPLOYING


def test_a_failed_deployment_ends_the_wait_with_the_developers_reason(store: Store, deploying: str):
    def fail() -> None:
        with store.session() as session:
            finish_stage(session, deploying, Status.DEPLOYING, succeeded=False)
        fail_submission(store, deploying, "deploying failed: vLLM could not load the weights", Leftovers())

    thread = _later(0.5, fail)
    with pytest.raises(DeploymentNotSucceeded, match="vLLM could not load the weights") as raised:
        wait_for_deployment(store, deploying, timeout_s=60)
    thread.join()

    assert str(raised.value).startswith("not stress-tested: the submission is failed")


def test_an_interrupted_deployment_is_waited_for_until_it_resumes(store: Store, deploying: str):
    with store.session() as session:
        # The run worker died mid-deployment; the submission is not failed: a retry resumes it.
        finish_stage(session, deploying, Status.DEPLOYING, succeeded=False)

    def resume_and_succeed() -> None:
        with store.session() as session:
            start_stage(session, deploying, Status.DEPLOYING)
            finish_stage(session, deploying, Status.DEPLOYING, succeeded=True)

    thread = _later(1.0, resume_and_succeed)
    waited_s = wait_for_deployment(store, deploying, timeout_s=60)
    thread.join()

    assert waited_s >= 1.0


def test_a_deployment_that_never_finishes_ends_the_wait_at_the_deadline(store: Store, deploying: str):
    with pytest.raises(DeploymentNotSucceeded, match="the deployment is still running after 1 s"):
        wait_for_deployment(store, deploying, timeout_s=1)


def test_a_stage_that_never_started_is_not_waited_for(store: Store, developer):
    with store.session() as session:
        submission_id = create_submission(session, developer, SubmissionRequest(model_repo="org/direct")).id

    assert wait_for_deployment(store, submission_id, timeout_s=60) < 1.0
