"""What each stage hands to the next, recorded in one place: the submission's row.

Stages read a `StageHandoff` when they start and record what they produced through `record_handoff`,
so no asset opens its own sessions on the submissions table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from sqlalchemy.orm import Session

from guanaco_dagster.submissions.submissions import get_submission


@dataclass(frozen=True)
class StageHandoff:
    """The submission's inputs and what earlier stages produced (None until a stage records it)."""

    submission_id: str
    model_repo: str
    requested_revision: str
    formatter: dict = field(default_factory=dict)  # the developer's prompt formatter (PromptFormatter)
    generation_params: dict = field(default_factory=dict)  # and sampling (GenerationParams)
    # `formatter` when one was submitted, else None until intake chooses (submissions/chat_format.py)
    chat_format: str | None = None
    resolved_revision: str | None = None  # raw_weights: the commit the revision resolved to
    artifact_sha256: str | None = None  # tensorized_artifact: content address of the artifact
    artifact_uri: str | None = None  # cached_s3_object: where the artifact lives in the cache
    endpoint_url: str | None = None  # live_deployment: the server's OpenAI-compatible base URL
    served_model_name: str | None = None  # live_deployment: the model name the server answers to


# What stages may record; the submission's inputs are fixed when it is created.
RECORDED_FIELDS = frozenset(
    {
        "resolved_revision",
        "chat_format",
        "artifact_sha256",
        "artifact_uri",
        "endpoint_url",
        "served_model_name",
    }
)


def read_handoff(session: Session, submission_id: str) -> StageHandoff:
    """What the submission's earlier stages recorded."""
    submission = get_submission(session, submission_id)
    recorded = {item.name: getattr(submission, item.name) for item in fields(StageHandoff)[1:]}
    return StageHandoff(submission_id=submission.id, **recorded)


def record_handoff(session: Session, submission_id: str, **produced: str | None) -> None:
    """Record what a stage produced for the stages after it."""
    unknown = set(produced) - RECORDED_FIELDS
    if unknown:
        raise ValueError(f"stages cannot record {sorted(unknown)}; they record {sorted(RECORDED_FIELDS)}")
    submission = get_submission(session, submission_id)
    for name, value in produced.items():
        setattr(submission, name, value)
