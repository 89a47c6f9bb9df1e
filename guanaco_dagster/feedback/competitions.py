"""Competitions: calendar-month windows over the leaderboard, as Chai's client lists them.

A competition ranks the models submitted in one UTC month, on the feedback they received in that month.
There is one per month since the first submission that reached users, and always one for the current month,
last, since chaiverse's `display_competition_leaderboard` takes the last competition as the current one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guanaco_dagster.arena.config import ArenaConfig
from guanaco_dagster.feedback.leaderboard import LISTED_STATUSES, build_leaderboard
from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.store.models import Submission, utcnow

# chaiverse's type for a leaderboard ranked on feedback collected during the competition.
COMPETITION_TYPE = "submission_closed_feedback_round_robin"


@dataclass
class CompetitionWindow:
    """One month: the models submitted in it and their leaderboard."""

    id: str
    start: datetime
    end: datetime
    leaderboard: list[LeaderboardRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The competition in chaiverse's shape (dates as ISO 8601 with a timezone, as it asserts)."""
        return {
            "id": self.id,
            "type": COMPETITION_TYPE,
            "submission_start_date": self.start.isoformat(),
            "submission_end_date": self.end.isoformat(),
            "start_time": self.start.isoformat(),
            "end_time": self.end.isoformat(),
            "submissions": [row.submission_id for row in self.leaderboard],
            "leaderboard": [row.to_dict() for row in self.leaderboard],
        }


def month_start(moment: datetime) -> datetime:
    """Midnight UTC on the first day of `moment`'s month."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    """The first day of the month after `start`'s."""
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def month_windows(first: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    """(start, end) of every month from `first`'s to `now`'s, oldest first."""
    windows, start, last = [], month_start(first), month_start(now)
    while start <= last:
        windows.append((start, next_month(start)))
        start = next_month(start)
    return windows


def list_competitions(
    session: Session, min_feedback: int, now: datetime | None = None, arena: ArenaConfig = ArenaConfig()
) -> list[CompetitionWindow]:
    """Every monthly competition, oldest first, each with its leaderboard; the current month is last."""
    now = now or utcnow()
    first = session.scalar(
        select(func.min(Submission.created_at)).where(Submission.status.in_(list(LISTED_STATUSES)))
    )
    competitions = []
    for start, end in month_windows(first or now, now):
        board = build_leaderboard(
            session, min_feedback, submitted_after=start, submitted_before=end, arena=arena
        )
        competitions.append(CompetitionWindow(f"guanaco-{start:%Y-%m}", start, end, board))
    return competitions
