"""One leaderboard line: a plain dataclass the service builds and the CLI reads.

Kept apart from `leaderboard.py` so the CLI can parse the service's answer without importing SQLAlchemy.
Field names include the ones Chai's client (chaiverse) reads: `developer_uid`, `model_repo`, `reward_repo`,
`timestamp` (ISO 8601 text) and `model_num_parameters`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class LeaderboardRow:
    """One model that reached users: its votes with their interval, engagement, latency, battle rating and
    place."""

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
    wilson_upper_bound: float | None = None
    conversation_count: int = 0
    # Fewer feedback than the platform's minimum: listed, but always below every rated model.
    provisional: bool = False
    model_repo: str = ""
    timestamp: str = ""
    developer_uid: str = ""
    reward_repo: str | None = None
    model_num_parameters: int | None = None
    # Battles, with Chai's field names: the Bradley–Terry rating on the Elo scale and its 95 % interval.
    elo_rating: float | None = None
    bt_ci_low: float | None = None
    bt_ci_high: float | None = None
    num_battles: int | None = None
    num_wins: int | None = None
    # Fewer battles than the platform's minimum: the rating is shown but not yet to be trusted.
    battles_provisional: bool | None = None

    def to_dict(self) -> dict[str, object]:
        """The row as plain JSON-ready values."""
        return asdict(self)
