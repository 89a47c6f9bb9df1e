"""The status lifecycle allows exactly the moves the pipeline and operators make."""

import pytest

from guanaco_dagster.submissions.lifecycle import PIPELINE_STAGES, InvalidTransition, Status, check_transition


def test_pipeline_stages_advance_in_order_to_deployed():
    path = [Status.PENDING, *PIPELINE_STAGES, Status.DEPLOYED]
    for current, target in zip(path, path[1:], strict=False):
        check_transition(current, target)


@pytest.mark.parametrize("stage", [Status.PENDING, *PIPELINE_STAGES])
def test_any_in_progress_stage_can_fail(stage):
    check_transition(stage, Status.FAILED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (Status.PENDING, Status.DEPLOYED),
        (Status.DOWNLOADING, Status.UPLOADING),
        (Status.FAILED, Status.DEPLOYED),
        (Status.INACTIVE, Status.DEPLOYED),
        (Status.DEPLOYED, Status.DOWNLOADING),
    ],
)
def test_skipping_or_reviving_stages_is_refused(current, target):
    with pytest.raises(InvalidTransition, match=f"from '{current}' to '{target}'"):
        check_transition(current, target)


def test_deployed_model_can_be_deactivated_and_redeployed():
    check_transition(Status.DEPLOYED, Status.INACTIVE)
    check_transition(Status.INACTIVE, Status.PENDING)
