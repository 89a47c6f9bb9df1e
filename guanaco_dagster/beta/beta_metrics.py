"""Prometheus counters of the beta product: routing decisions, failovers and feedback received.

They live in the process's default registry, which the service's `/metrics` exposes. Labels are submission
ids: one series per model, a number bounded by the models ever deployed.
"""

from __future__ import annotations

from prometheus_client import Counter

ROUTED = Counter(
    "guanaco_beta_routed_conversations",
    "Beta conversations routed to a model (new ones, and ones moved after a failure).",
    ["submission_id"],
)
NO_MODEL = Counter(
    "guanaco_beta_no_model_available",
    "Routing decisions that found no deployed, healthy model.",
)
FAILOVERS = Counter(
    "guanaco_beta_failovers",
    "Conversations moved away from a model that failed their first reply (label: the failed model).",
    ["submission_id"],
)
FEEDBACK = Counter(
    "guanaco_beta_feedback_received",
    "Feedback stored from beta users (retries with the same idempotency key count once).",
    ["submission_id", "verdict"],
)


def count_feedback(submission_id: str, thumbs_up: bool) -> None:
    """Count one stored piece of feedback on `submission_id`."""
    FEEDBACK.labels(submission_id=submission_id, verdict="up" if thumbs_up else "down").inc()
