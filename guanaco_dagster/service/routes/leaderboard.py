"""The public leaderboard and competitions (Chai's client reads them without a key), and `evaluate`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from guanaco_dagster.feedback.competitions import list_competitions
from guanaco_dagster.feedback.leaderboard import build_leaderboard
from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.service.dependencies import DeveloperDep, SessionDep, get_settings
from guanaco_dagster.service.routes.models import owned_submission
from guanaco_dagster.service.schemas import Competition, Evaluation
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.models import FeedbackSummaryRow, LatencyReportRow

router = APIRouter(tags=["leaderboard"])
SettingsDep = Annotated[Settings, Depends(get_settings)]


@router.get(
    "/leaderboard",
    response_model=dict[str, LeaderboardRow],
    summary="Every model that reached users, best first (public)",
)
def leaderboard(
    session: SessionDep,
    settings: SettingsDep,
    start_date: Annotated[
        datetime | None, Query(description="Only models submitted at or after this moment.")
    ] = None,
    end_date: Annotated[
        datetime | None, Query(description="Only models submitted before this moment.")
    ] = None,
) -> dict[str, LeaderboardRow]:
    """Keyed by submission id (chaiverse's shape), in rank order; models with fewer than the minimum
    feedback are marked provisional and come after every rated model."""
    rows = build_leaderboard(session, settings.leaderboard_min_feedback, start_date, end_date, settings)
    return {row.submission_id: row for row in rows}


@router.get("/competitions", response_model=list[Competition], summary="Monthly competitions (public)")
def competitions(session: SessionDep, settings: SettingsDep) -> list[dict[str, object]]:
    """One competition per UTC month since the first model reached users, the current month last."""
    return [
        c.to_dict() for c in list_competitions(session, settings.leaderboard_min_feedback, arena=settings)
    ]


@router.get("/models/{submission_id}/evaluate", response_model=Evaluation, summary="Where your model stands")
def evaluate(
    submission_id: str, session: SessionDep, settings: SettingsDep, developer: DeveloperDep
) -> Evaluation:
    """The model's leaderboard row (rank among all models), its latency test and its feedback summary."""
    submission = owned_submission(session, developer, submission_id)
    rows = build_leaderboard(session, settings.leaderboard_min_feedback, arena=settings)
    latency = session.get(LatencyReportRow, submission.id)
    summary = session.get(FeedbackSummaryRow, submission.id)
    return Evaluation(
        submission_id=submission.id,
        status=submission.status,
        min_feedback=settings.leaderboard_min_feedback,
        leaderboard=next((row for row in rows if row.submission_id == submission.id), None),
        latency=latency.report if latency else None,
        feedback_summary=summary.summary["summary"] if summary else None,
    )
