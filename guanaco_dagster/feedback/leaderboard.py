"""The leaderboard: every model that has served users, ranked on feedback, engagement and latency."""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from guanaco_dagster.feedback.feedback_metrics import thumbs_up_standard_error, wilson_interval
from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.store.models import Developer, Feedback, FeedbackSummaryRow, LatencyReportRow, Submission
from guanaco_dagster.submissions.lifecycle import Status

LISTED_STATUSES = (Status.DEPLOYED, Status.INACTIVE, Status.TORNDOWN)
# (field, True when higher is better): the overall rank is the mean of a model's rank on each.
RANKED_METRICS = (
    ("wilson_lower_bound", True),
    ("mean_conversation_length", True),
    ("repetition_score", False),
    ("latency_p95_s", False),
)


def _rank_positions(rows: list[LeaderboardRow], field: str, higher_is_better: bool) -> dict[str, int]:
    scored = [r for r in rows if getattr(r, field) is not None]
    ordered = sorted(scored, key=lambda r: getattr(r, field), reverse=higher_is_better)
    return {row.submission_id: position for position, row in enumerate(ordered, start=1)}


def rank_rows(rows: list[LeaderboardRow]) -> list[LeaderboardRow]:
    """Set each row's overall score (mean rank over the metrics it has) and rank; best first."""
    positions = [_rank_positions(rows, field, higher) for field, higher in RANKED_METRICS]
    for row in rows:
        ranks = [p[row.submission_id] for p in positions if row.submission_id in p]
        row.overall_score = sum(ranks) / len(ranks) if ranks else None
    rows.sort(key=lambda r: (r.overall_score is None, r.overall_score or 0.0, -r.total_feedback_count))
    for position, row in enumerate(rows, start=1):
        row.overall_rank = position if row.overall_score is not None else None
    return rows


def build_leaderboard(session: Session) -> list[LeaderboardRow]:
    """One row per model that reached users (deployed, or retired after serving), ranked."""
    votes = (
        select(
            Feedback.submission_id,
            func.sum(case((Feedback.thumbs_up, 1), else_=0)).label("up"),
            func.count().label("n"),
        )
        .group_by(Feedback.submission_id)
        .subquery()
    )
    query = (
        select(
            Submission,
            Developer.name,
            votes.c.up,
            votes.c.n,
            FeedbackSummaryRow.summary,
            LatencyReportRow.report,
        )
        .join(Developer, Developer.id == Submission.developer_id)
        .outerjoin(votes, votes.c.submission_id == Submission.id)
        .outerjoin(FeedbackSummaryRow, FeedbackSummaryRow.submission_id == Submission.id)
        .outerjoin(LatencyReportRow, LatencyReportRow.submission_id == Submission.id)
        .where(Submission.status.in_(list(LISTED_STATUSES)))
    )
    rows = []
    for submission, developer, up, total, summary_doc, latency in session.execute(query):
        up, total = int(up or 0), int(total or 0)
        summary = (summary_doc or {}).get("summary", {})
        rows.append(
            LeaderboardRow(
                submission_id=submission.id,
                model_name=submission.model_name,
                developer=developer,
                status=submission.status,
                thumbs_up=up,
                thumbs_down=total - up,
                total_feedback_count=total,
                thumbs_up_ratio=up / total if total else None,
                thumbs_up_ratio_se=thumbs_up_standard_error(up, total) if total else None,
                wilson_lower_bound=wilson_interval(up, total)[0] if total else None,
                mean_conversation_length=summary.get("mean_conversation_length") if total else None,
                repetition_score=summary.get("repetition_score") if total else None,
                latency_p95_s=(latency or {}).get("latency_p95_s"),
            )
        )
    return rank_rows(rows)
