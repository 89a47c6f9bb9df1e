"""The leaderboard: every model that reached users, ranked on feedback, engagement and latency.

Ranking rules, chosen so a row's place can be trusted:
- only models with at least one conversation are listed (a deployed model nobody talked to has no score);
- a model with fewer than `min_feedback` thumbs is *provisional*: listed, but below every rated model;
- within each group the overall score is the mean of the model's rank on each metric, and a missing metric
  counts as last place (averaging only the metrics a model has let a model with nothing but a latency win);
- every thumbs-up ratio comes with its 95% Wilson interval;
- models that fought battles carry their Bradley–Terry rating (Elo scale) with its 95% interval, from the
  votes that count (`guanaco_dagster.arena`); it is shown beside the ranking, not mixed into it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from guanaco_dagster.arena.config import ArenaConfig
from guanaco_dagster.arena.counted_votes import counted_votes
from guanaco_dagster.arena.ratings import Rating, fit_ratings
from guanaco_dagster.feedback.feedback_metrics import thumbs_up_standard_error, wilson_interval
from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.store.models import (
    Conversation,
    Developer,
    Feedback,
    FeedbackSummaryRow,
    LatencyReportRow,
    Submission,
)
from guanaco_dagster.submissions.lifecycle import Status

LISTED_STATUSES = (Status.DEPLOYED, Status.INACTIVE, Status.TORNDOWN)
# (field, True when higher is better): the overall score is the mean of a model's rank on each.
RANKED_METRICS = (
    ("wilson_lower_bound", True),
    ("mean_conversation_length", True),
    ("repetition_score", False),
    ("latency_p95_s", False),
)


def _metric_ranks(rows: list[LeaderboardRow], field: str, higher_is_better: bool) -> dict[str, int]:
    """Each row's place on one metric, 1 = best; rows without the metric share the last place."""
    scored = [r for r in rows if getattr(r, field) is not None]
    ordered = sorted(scored, key=lambda r: getattr(r, field), reverse=higher_is_better)
    places = {row.submission_id: place for place, row in enumerate(ordered, start=1)}
    return {row.submission_id: places.get(row.submission_id, len(rows)) for row in rows}


def _score_group(rows: list[LeaderboardRow]) -> list[LeaderboardRow]:
    """Set each row's overall score within its group and return the group best first."""
    ranks = [_metric_ranks(rows, field, higher) for field, higher in RANKED_METRICS]
    for row in rows:
        row.overall_score = sum(r[row.submission_id] for r in ranks) / len(ranks)
    # Ties go to the model with more evidence: the higher Wilson bound, then more feedback.
    return sorted(
        rows,
        key=lambda r: (r.overall_score, -(r.wilson_lower_bound or 0.0), -r.total_feedback_count),
    )


def rank_rows(rows: list[LeaderboardRow], min_feedback: int) -> list[LeaderboardRow]:
    """Mark provisional rows, score rated and provisional rows apart, and number them rated first."""
    for row in rows:
        row.provisional = row.total_feedback_count < min_feedback
    rated = _score_group([r for r in rows if not r.provisional])
    provisional = _score_group([r for r in rows if r.provisional])
    ranked = rated + provisional
    for place, row in enumerate(ranked, start=1):
        row.overall_rank = place
    return ranked


def _per_submission_counts(session: Session):
    votes = (
        select(
            Feedback.submission_id,
            func.sum(case((Feedback.thumbs_up, 1), else_=0)).label("up"),
            func.count().label("n"),
        )
        .group_by(Feedback.submission_id)
        .subquery()
    )
    conversations = (
        select(Conversation.submission_id, func.count().label("n"))
        .group_by(Conversation.submission_id)
        .subquery()
    )
    return votes, conversations


def build_leaderboard(
    session: Session,
    min_feedback: int,
    submitted_after: datetime | None = None,
    submitted_before: datetime | None = None,
    arena: ArenaConfig = ArenaConfig(),
) -> list[LeaderboardRow]:
    """One row per model that reached users (optionally only those submitted in a window), ranked, with
    its battle rating when it fought battles."""
    votes, conversations = _per_submission_counts(session)
    query = (
        select(
            Submission,
            Developer.name,
            votes.c.up,
            votes.c.n,
            conversations.c.n,
            FeedbackSummaryRow.summary,
            LatencyReportRow.report,
        )
        .join(Developer, Developer.id == Submission.developer_id)
        .join(conversations, conversations.c.submission_id == Submission.id)
        .outerjoin(votes, votes.c.submission_id == Submission.id)
        .outerjoin(FeedbackSummaryRow, FeedbackSummaryRow.submission_id == Submission.id)
        .outerjoin(LatencyReportRow, LatencyReportRow.submission_id == Submission.id)
        .where(Submission.status.in_(list(LISTED_STATUSES)), conversations.c.n > 0)
    )
    if submitted_after is not None:
        query = query.where(Submission.created_at >= as_utc(submitted_after))
    if submitted_before is not None:
        query = query.where(Submission.created_at < as_utc(submitted_before))
    rows = [_row(*result) for result in session.execute(query)]
    add_battle_ratings(rows, fit_ratings(counted_votes(session, arena), arena.leaderboard_min_battles))
    return rank_rows(rows, min_feedback)


def add_battle_ratings(rows: list[LeaderboardRow], ratings: dict[str, Rating]) -> None:
    """Fill each row's battle fields from its model's rating; a model without battles keeps None."""
    for row in rows:
        rating = ratings.get(row.submission_id)
        if rating is None:
            continue
        row.elo_rating, row.bt_ci_low, row.bt_ci_high = rating.elo, rating.ci_low, rating.ci_high
        row.num_battles, row.num_wins = rating.battles, rating.wins
        row.battles_provisional = rating.provisional


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC (naive means UTC), clamped to the calendar's ends: databases refuse offsets like
    +23:59 that Python accepts, and year 1 at +01:00 is before the first representable moment."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year == datetime.min.year else datetime.max).replace(tzinfo=UTC)


def _row(
    submission: Submission,
    developer: str,
    up: int | None,
    total: int | None,
    conversation_count: int,
    summary_doc: dict | None,
    latency: dict | None,
) -> LeaderboardRow:
    up, total = int(up or 0), int(total or 0)
    summary = (summary_doc or {}).get("summary", {}) if total else {}
    low, high = wilson_interval(up, total) if total else (None, None)
    return LeaderboardRow(
        submission_id=submission.id,
        model_name=submission.model_name,
        developer=developer,
        developer_uid=developer,
        status=submission.status,
        model_repo=submission.model_repo,
        timestamp=submission.created_at.isoformat(),
        thumbs_up=up,
        thumbs_down=total - up,
        total_feedback_count=total,
        conversation_count=int(conversation_count),
        thumbs_up_ratio=up / total if total else None,
        thumbs_up_ratio_se=thumbs_up_standard_error(up, total) if total else None,
        wilson_lower_bound=low,
        wilson_upper_bound=high,
        mean_conversation_length=summary.get("mean_conversation_length"),
        repetition_score=summary.get("repetition_score"),
        latency_p95_s=(latency or {}).get("latency_p95_s"),
    )
