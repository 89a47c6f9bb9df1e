"""Battle votes: what is stored when a user picks a winner, and whether it counts when it is stored.

Which stored votes the ratings finally use (flagged voters left out) is `arena.counted_votes`."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from guanaco_dagster.beta.conversations import ConversationError
from guanaco_dagster.store.models import Battle, BattleVote, Developer, Submission


@dataclass(frozen=True)
class CountedVote:
    """One vote the ratings use: `winner` is "a", "b", "tie" or "both_bad" for the pair
    (`submission_a`, `submission_b`) as the user saw it."""

    submission_a: str
    submission_b: str
    winner: str
    user_id: str
    created_at: datetime


WINNERS = ("a", "b", "tie", "both_bad")
# Why a stored vote does not count (BattleVote.excluded_reason).
OWN_MODEL = "own_model"  # the voter is the developer of one of the two models
REPEAT_PAIR = "repeat_pair"  # the voter already has a counted vote on this pair of models
# Both sides ended on one model: possible only when both failed their first reply at once and moved to the
# same replacement. Such a vote compares nothing.
SAME_MODEL = "same_model"


class VoteRefused(ConversationError):
    """The vote cannot be stored as asked (e.g. a different verdict on a battle already voted on)."""


def is_developer_of(session: Session, user_id: str, submission_ids: Collection[str]) -> bool:
    """Whether the beta user is the developer of one of the submissions.

    The platform knows a beta user is a developer when the app sends the developer's Guanaco name as the
    user's `user_id` (a developer who tries the models through the app or the beta page does so under their
    own name); votes that could favour one's own model are stored but never counted.
    """
    owners = session.scalars(
        select(Developer.name)
        .join(Submission, Submission.developer_id == Developer.id)
        .where(Submission.id.in_(list(submission_ids)))
    )
    return user_id in set(owners)


def _has_counted_vote_on_pair(session: Session, user_id: str, first: str, second: str) -> bool:
    same_order = and_(BattleVote.submission_a_id == first, BattleVote.submission_b_id == second)
    swapped = and_(BattleVote.submission_a_id == second, BattleVote.submission_b_id == first)
    earlier = select(BattleVote.id).where(
        BattleVote.user_id == user_id, BattleVote.counted, or_(same_order, swapped)
    )
    return session.scalar(earlier.limit(1)) is not None


def exclusion_reason(session: Session, user_id: str, submission_a: str, submission_b: str) -> str | None:
    """Why a new vote of `user_id` on this pair would not count, or None when it counts."""
    if submission_a == submission_b:
        return SAME_MODEL
    if is_developer_of(session, user_id, (submission_a, submission_b)):
        return OWN_MODEL
    if _has_counted_vote_on_pair(session, user_id, submission_a, submission_b):
        return REPEAT_PAIR
    return None


def record_vote(
    session: Session, battle: Battle, submission_a: str, submission_b: str, winner: str
) -> tuple[BattleVote, bool]:
    """Store the battle's vote once; returns (vote, created).

    A retry with the same verdict returns the stored vote (created=False), even when the retries race; a
    different verdict on a battle already voted on is refused: votes cannot be changed.
    """
    if winner not in WINNERS:
        raise VoteRefused(f"winner '{winner}' is not one of {', '.join(WINNERS)}")
    existing = _existing_vote(session, battle.id, winner)
    if existing is not None:
        return existing, False
    reason = exclusion_reason(session, battle.user_id, submission_a, submission_b)
    vote = BattleVote(
        battle_id=battle.id,
        user_id=battle.user_id,
        submission_a_id=submission_a,
        submission_b_id=submission_b,
        winner=winner,
        counted=reason is None,
        excluded_reason=reason,
    )
    try:
        with session.begin_nested():
            session.add(vote)
            session.flush()
    except IntegrityError:
        # The twin of a retried post committed between the check and the insert.
        existing = _existing_vote(session, battle.id, winner)
        if existing is None:
            raise
        return existing, False
    return vote, True


def _existing_vote(session: Session, battle_id: str, winner: str) -> BattleVote | None:
    existing = session.scalar(select(BattleVote).where(BattleVote.battle_id == battle_id))
    if existing is not None and existing.winner != winner:
        raise VoteRefused(
            f"battle '{battle_id}' already has the vote '{existing.winner}'; a vote cannot be changed"
        )
    return existing


def _first_vote_per_user_and_pair(rows: Iterable[BattleVote]) -> list[CountedVote]:
    """Counted votes oldest first, keeping one per user and unordered pair (two votes posted at the same
    moment on two battles of one pair can both pass the check at write time)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    votes: list[CountedVote] = []
    for row in rows:
        key = (row.user_id, frozenset((row.submission_a_id, row.submission_b_id)))
        if key in seen:
            continue
        seen.add(key)
        votes.append(
            CountedVote(row.submission_a_id, row.submission_b_id, row.winner, row.user_id, row.created_at)
        )
    return votes


def votes_counted_at_write_time(session: Session) -> list[CountedVote]:
    """Every vote stored as counted, oldest first, one per user and pair, before the anomaly filter."""
    rows = session.scalars(
        select(BattleVote).where(BattleVote.counted).order_by(BattleVote.created_at, BattleVote.id)
    )
    return _first_vote_per_user_and_pair(rows)
