"""What an operator tunes about battles: routing policy, new-model boost, provisional ratings, anomalies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ArenaConfig(BaseModel):
    """Battle routing and ratings (`GUANACO_ROUTING_POLICY`, `GUANACO_LEADERBOARD_MIN_BATTLES`, …)."""

    routing_policy: Literal["active", "uniform", "newest"] = Field(
        default="active",
        description="How models are chosen: `active` where one more vote shrinks the intervals most, "
        "`uniform` at random, `newest` the newest and hungriest model first (single conversations only; "
        "battles then pair uniformly).",
    )
    leaderboard_min_battles: int = Field(
        default=30, ge=1, description="Battles below which a model's arena rating is provisional."
    )
    new_model_boost: float = Field(
        default=10.0,
        ge=0,
        description="Extra routing weight for a model with few battles: ×(1 + boost / (1 + its battles)).",
    )
    anomaly_threshold: float = Field(
        default=3.0,
        gt=0,
        description="Anomaly score (standard deviations of disagreement with the consensus beyond chance) "
        "above which a user's votes are excluded.",
    )
    anomaly_min_votes: int = Field(
        default=20, ge=1, description="Decisive votes a user needs before they can be flagged."
    )
