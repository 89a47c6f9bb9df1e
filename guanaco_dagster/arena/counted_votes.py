"""The votes ratings use: those counted when stored, one per user and pair, minus flagged voters' votes.

Kept apart from `votes` because the anomaly filter (`anomaly`) reads votes itself: the filter is applied to
the votes as they stand whenever ratings are computed, so a user flagged later loses all their votes.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from guanaco_dagster.arena.anomaly import flagged_users
from guanaco_dagster.arena.config import ArenaConfig
from guanaco_dagster.arena.votes import CountedVote, votes_counted_at_write_time


def counted_votes(session: Session, arena: ArenaConfig = ArenaConfig()) -> list[CountedVote]:
    """The votes ratings use, oldest first: counted when stored, of users not flagged as anomalous."""
    votes = votes_counted_at_write_time(session)
    flagged = flagged_users(votes, arena.anomaly_threshold, arena.anomaly_min_votes)
    return [vote for vote in votes if vote.user_id not in flagged]


def flagged_voters(session: Session, arena: ArenaConfig = ArenaConfig()) -> dict[str, tuple[float, int]]:
    """User → (anomaly score, votes left out) of every flagged user, the most anomalous first."""
    votes = votes_counted_at_write_time(session)
    flagged = flagged_users(votes, arena.anomaly_threshold, arena.anomaly_min_votes)
    counts = {user: sum(1 for vote in votes if vote.user_id == user) for user in flagged}
    return {user: (flagged[user], counts[user]) for user in sorted(flagged, key=lambda u: -flagged[u])}
