"""A second `make demo` in the same home starts from the earlier run's models retired, not still taking
the beta users its new model needs for its first feedback."""

from __future__ import annotations

from guanaco_dagster.store.database import Store
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission, get_submission
from guanaco_dagster.testing.demo import CHALLENGER_REPO, SAMPLE_REPO, retire_earlier_demo_models
from tests.fixtures.store import walk_to


def _deployed(store: Store, developer, repo: str) -> str:
    with store.session() as session:
        submission_id = create_submission(session, developer, SubmissionRequest(model_repo=repo)).id
        walk_to(session, submission_id, Status.DEPLOYED)
    return submission_id


def test_a_new_demo_retires_the_earlier_demos_models_and_nothing_else(store: Store, developer):
    sample = _deployed(store, developer, SAMPLE_REPO)
    challenger = _deployed(store, developer, CHALLENGER_REPO)
    someone_elses = _deployed(store, developer, "alice/own-model")

    retired = retire_earlier_demo_models(store)

    assert sorted(retired) == sorted([sample, challenger])
    with store.session() as session:
        assert get_submission(session, sample).status == Status.INACTIVE
        assert get_submission(session, challenger).status == Status.INACTIVE
        assert get_submission(session, someone_elses).status == Status.DEPLOYED
    assert retire_earlier_demo_models(store) == []
