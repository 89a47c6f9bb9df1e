"""One leaderboard line: a plain dataclass the service builds and the CLI reads.

Kept apart from `leaderboard.py` so the CLI can parse the service's answer without importing SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class LeaderboardRow:
    """One model that served users: its votes, engagement and latency, and its place on the board."""

    submission_id: str
    model_name: str
    developer: str
    status: str
    thumbs_up: int
    thumbs_down: int
    total_feedback_count: int
    thumbs_up_ratio: float | None
    thumbs_up_ratio_se: float | None
    wilson_lower_bound: float | None
    mean_conversation_length: float | None
    repetition_score: float | None
    latency_p95_s: float | None
    overall_score: float | None = None
    overall_rank: int | None = None

    def to_dict(self) -> dict[str, object]:
        """The row as plain JSON-ready values."""
        return asdict(self)
