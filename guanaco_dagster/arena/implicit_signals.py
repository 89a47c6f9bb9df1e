"""Implicit signals: what users do, not what they say — how long they keep talking to a model, how often they
ask it for another reply, how often they leave after one message without a word.

Per submission, each with a 95 % interval:
- conversation length: user turns per single conversation (mean, normal interval);
- regenerations per reply: bot replies the user asked to replace, over every bot reply (Wilson);
- early exits: single conversations with at most one user turn and no feedback, over the single
  conversations old enough to have ended (Wilson).
Battle conversations count for regenerations only: both sides of a battle share the user's turns and exit.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select, union
from sqlalchemy.orm import Session

from guanaco_dagster.feedback.feedback_metrics import Z_95, wilson_interval
from guanaco_dagster.store.models import Battle, Conversation, Feedback, Message, utcnow

# A conversation younger than this may still be going on: it is not judged as an early exit yet.
EARLY_EXIT_AFTER_MIN = 30.0


@dataclass(frozen=True)
class Rate:
    """`count` out of `total`, with its Wilson 95 % interval; rate and interval are None when total is 0."""

    count: int
    total: int
    rate: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, count: int, total: int) -> Rate:
        if total == 0:
            return cls(count, total, None, None, None)
        low, high = wilson_interval(count, total)
        return cls(count, total, count / total, low, high)


@dataclass(frozen=True)
class ImplicitSignals:
    """One model's implicit signals; `to_dict` is JSON-ready, `to_markdown` is for people."""

    submission_id: str
    conversations: int
    mean_user_turns: float | None
    mean_user_turns_low: float | None
    mean_user_turns_high: float | None
    regenerations: Rate
    early_exits: Rate

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_markdown(self) -> str:
        """A table of the three signals with their 95 % intervals."""
        length = "–"
        if self.mean_user_turns is not None:
            low, high = self.mean_user_turns_low, self.mean_user_turns_high
            length = f"{self.mean_user_turns:.1f} ({low:.1f} – {high:.1f})"
        rows = [
            ("Conversation length (user turns)", length, f"{self.conversations} conversations"),
            (
                "Regenerations per reply (Wilson)",
                _rate_text(self.regenerations),
                f"{self.regenerations.total} replies",
            ),
            (
                "Early exits (Wilson)",
                _rate_text(self.early_exits),
                f"{self.early_exits.total} ended conversations",
            ),
        ]
        lines = ["| Implicit signal | Value (95 % interval) | Out of |", "| --- | --- | ---: |"]
        lines += [f"| {name} | {value} | {total} |" for name, value, total in rows]
        return "\n".join(lines) + "\n"


def _rate_text(rate: Rate) -> str:
    if rate.rate is None:
        return "–"
    return f"{rate.rate:.1%} ({rate.low:.1%} – {rate.high:.1%})"


def mean_interval(values: list[int]) -> tuple[float | None, float | None, float | None]:
    """Mean and normal-approximation 95 % interval (mean ± 1.96·s/√n); the interval is the mean itself for
    one value, and all three are None for none."""
    if not values:
        return None, None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half_width = Z_95 * statistics.stdev(values) / math.sqrt(len(values))
    return mean, max(0.0, mean - half_width), mean + half_width


def _battle_conversation_ids():  # noqa: ANN202
    return union(select(Battle.conversation_a_id), select(Battle.conversation_b_id))


def _conversation_rows(session: Session, submission_ids: Collection[str] | None):  # noqa: ANN202
    """(submission, created_at, user turns, has feedback) of every single (non-battle) conversation."""
    turns = (
        select(Message.conversation_id, func.count().label("n"))
        .where(Message.sender == "user", Message.deleted.is_(False))
        .group_by(Message.conversation_id)
        .subquery()
    )
    query = (
        select(
            Conversation.submission_id,
            Conversation.created_at,
            func.coalesce(turns.c.n, 0),
            Feedback.id.is_not(None),
        )
        .outerjoin(turns, turns.c.conversation_id == Conversation.id)
        .outerjoin(Feedback, Feedback.conversation_id == Conversation.id)
        .where(Conversation.id.not_in(_battle_conversation_ids()))
    )
    if submission_ids is not None:
        query = query.where(Conversation.submission_id.in_(list(submission_ids)))
    return session.execute(query).all()


def _reply_counts(session: Session, submission_ids: Collection[str] | None) -> dict[str, tuple[int, int]]:
    """Submission → (regenerated bot replies, all bot replies), battle conversations included."""
    query = (
        select(
            Conversation.submission_id,
            func.sum(case((Message.regenerated, 1), else_=0)),
            func.count(),
        )
        .join(Message, Message.conversation_id == Conversation.id)
        .where(Message.sender == "bot")
        .group_by(Conversation.submission_id)
    )
    if submission_ids is not None:
        query = query.where(Conversation.submission_id.in_(list(submission_ids)))
    return {sid: (int(regenerated or 0), int(total)) for sid, regenerated, total in session.execute(query)}


def implicit_signals(
    session: Session,
    submission_ids: Collection[str] | None = None,
    *,
    now: datetime | None = None,
    early_exit_after_min: float = EARLY_EXIT_AFTER_MIN,
) -> dict[str, ImplicitSignals]:
    """Each submission's implicit signals (every submission with a conversation, or only `submission_ids`)."""
    ended_before = (now or utcnow()) - timedelta(minutes=early_exit_after_min)
    turns: dict[str, list[int]] = defaultdict(list)
    exits: dict[str, list[bool]] = defaultdict(list)
    for submission_id, created_at, user_turns, has_feedback in _conversation_rows(session, submission_ids):
        turns[submission_id].append(int(user_turns))
        if created_at <= ended_before:
            exits[submission_id].append(int(user_turns) <= 1 and not has_feedback)
    replies = _reply_counts(session, submission_ids)
    wanted = submission_ids if submission_ids is not None else sorted({*turns, *replies})
    signals: dict[str, ImplicitSignals] = {}
    for submission_id in wanted:
        mean, low, high = mean_interval(turns.get(submission_id, []))
        regenerated, bot_replies = replies.get(submission_id, (0, 0))
        ended = exits.get(submission_id, [])
        signals[submission_id] = ImplicitSignals(
            submission_id=submission_id,
            conversations=len(turns.get(submission_id, [])),
            mean_user_turns=mean,
            mean_user_turns_low=low,
            mean_user_turns_high=high,
            regenerations=Rate.of(regenerated, bot_replies),
            early_exits=Rate.of(sum(ended), len(ended)),
        )
    return signals
