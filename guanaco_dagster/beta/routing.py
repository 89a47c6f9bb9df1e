"""Beta routing: which deployed, healthy model a new conversation goes to (newest first, hungriest first)."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from guanaco_dagster.beta.beta_metrics import NO_MODEL, ROUTED
from guanaco_dagster.beta.health import routable_health
from guanaco_dagster.store.models import Feedback, LifecycleRequest, Submission
from guanaco_dagster.submissions.lifecycle import Status


class NoModelAvailable(LookupError):
    """No model is deployed for beta users right now."""


@dataclass(frozen=True)
class RoutingCandidate:
    submission_id: str
    created_at: datetime
    feedback_count: int


def routing_weights(candidates: list[RoutingCandidate], feedback_target: int) -> dict[str, float]:
    """Weight = feedback still lacking (+1, so no model starves) / recency rank (newest = 1)."""
    newest_first = sorted(candidates, key=lambda c: c.created_at, reverse=True)
    return {
        c.submission_id: (max(feedback_target - c.feedback_count, 0) + 1) / rank
        for rank, c in enumerate(newest_first, start=1)
    }


def deployed_candidates(session: Session, exclude: Collection[str] = ()) -> list[RoutingCandidate]:
    """Every deployed submission whose server passed its last check (or had none yet), with its feedback."""
    counts = (
        select(Feedback.submission_id, func.count().label("n")).group_by(Feedback.submission_id).subquery()
    )
    rows = session.execute(
        select(Submission.id, Submission.created_at, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.submission_id == Submission.id)
        .where(Submission.status == Status.DEPLOYED, Submission.endpoint_url.is_not(None))
        .where(routable_health(), Submission.id.not_in(list(exclude)))
        # A model being deactivated or torn down leaves routing at once, before its server stops.
        .where(
            ~exists().where(
                LifecycleRequest.submission_id == Submission.id, LifecycleRequest.completed_at.is_(None)
            )
        )
    )
    return [RoutingCandidate(sid, created, int(n)) for sid, created, n in rows]


def choose_model(
    session: Session, feedback_target: int, rng: random.Random | None = None, exclude: Collection[str] = ()
) -> str:
    """Pick the submission a new beta conversation talks to (never one of `exclude`)."""
    weights = routing_weights(deployed_candidates(session, exclude), feedback_target)
    if not weights:
        NO_MODEL.inc()
        raise NoModelAvailable("no model is deployed for beta users right now")
    ids = list(weights)
    chosen = (rng or random).choices(ids, weights=[weights[i] for i in ids], k=1)[0]
    ROUTED.labels(submission_id=chosen).inc()
    return chosen
