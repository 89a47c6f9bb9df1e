"""Request and response models of the HTTP service: the OpenAPI schema is the contract.

Shapes follow Chai's public client (chaiverse) where it defines them, so that client works unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.submissions.formatter import refuse_control_characters
from guanaco_dagster.submissions.request import SubmissionRequest

SubmitRequest = SubmissionRequest


class SubmitResponse(BaseModel):
    submission_id: str


class LogEntry(BaseModel):
    """One line of a submission's log, in the shape chaiverse's `parse_log_entry` reads."""

    timestamp: datetime
    level: Literal["INFO", "ERROR"]
    entry: str


class StageTimingOut(BaseModel):
    stage: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    succeeded: bool | None


class SubmissionInfo(BaseModel):
    submission_id: str
    model_repo: str
    hf_revision: str
    resolved_revision: str | None
    model_name: str
    status: str
    failure_reason: str | None
    generation_params: dict
    formatter: dict
    chat_format: str | None = Field(
        default=None,
        description="`auto`: chats use the model's own chat template; `formatter`: the submitted formatter; "
        "`formatter-default`: none was submitted and the model ships no chat template, so Chai's default "
        "formatter (also served as the model's chat template); null until intake decides.",
    )
    timestamp: datetime
    stages: list[StageTimingOut]
    logs: list[LogEntry]
    time_to_deployed_s: float | None = Field(description="Seconds from submission to `deployed`.")
    developer_uid: str = Field(description="The submitting developer (chaiverse's name for it).")
    reward_repo: str | None = Field(default=None, description="Always null: Guanaco has no reward models.")
    metrics_url: str | None = Field(
        default=None,
        description="While deployed: the model server's own Prometheus metrics (vLLM's `/metrics`), as "
        "reachable from the platform's network.",
    )


class LifecycleResponse(BaseModel):
    submission_id: str
    action: str
    request_id: int
    status: str = Field(
        description="The submission's status now; the change itself is carried out by Dagster."
    )


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(max_length=200, description="'user' (or the user's name) for the user, else the bot.")
    message: str = Field(max_length=8000)


class ChatRequest(BaseModel):
    """A developer's test chat: the whole history, newest message last (as chaiverse sends it)."""

    model_config = ConfigDict(extra="forbid")

    memory: str = Field(default="", max_length=8000)
    prompt: str = Field(default="", max_length=8000)
    chat_history: list[ChatMessageIn] = Field(default_factory=list, max_length=200)
    bot_name: str = Field(default="Bot", min_length=1, max_length=100)
    user_name: str = Field(default="User", min_length=1, max_length=100)


class ChatResponse(BaseModel):
    model_input: str
    model_output: str


class FeedbackSender(BaseModel):
    name: str
    uid: str = Field(description="The user's pseudonym, or `_bot_<bot>` for the bot (as chaiverse reads it).")


class FeedbackMessage(BaseModel):
    content: str
    sender: FeedbackSender
    sent_date: datetime
    deleted: bool


class ConversationFeedback(BaseModel):
    conversation_id: str = Field(description="The same Chai-style id as this record's key.")
    messages: list[FeedbackMessage]
    thumbs_up: bool
    text: str
    model_name: str
    public: bool


class FeedbackResponse(BaseModel):
    """All feedback on a submission, keyed `_bot_<bot>_<user pseudonym>_<epoch seconds>` like Chai's ids.

    The epoch is when the feedback was left; chaiverse's `FeedbackMetrics` reads it as an integer.
    """

    feedback: dict[str, ConversationFeedback]
    thumbs_up: int
    thumbs_down: int
    summary: dict | None = Field(default=None, description="The latest `feedback_summary` of the submission.")


class BetaConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200)
    bot_id: str = Field(default="", max_length=200)
    bot_name: str = Field(default="Bot", min_length=1, max_length=100)
    user_name: str = Field(default="User", min_length=1, max_length=100)
    memory: str = Field(default="", max_length=8000)
    prompt: str = Field(default="", max_length=8000)


class BetaConversationResponse(BaseModel):
    conversation_id: str
    submission_id: str
    model_name: str


class BetaMessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=8000)


class BetaMessageResponse(BaseModel):
    conversation_id: str
    reply: str
    latency_s: float


class BetaFeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thumbs_up: bool
    text: str = Field(default="", max_length=4000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("idempotency_key")
    @classmethod
    def _key_is_printable(cls, value: str | None) -> str | None:
        # Compared in the store as it is: PostgreSQL refuses a NUL, and no client means an escape.
        return value if value is None else refuse_control_characters("idempotency_key", value)


class BetaFeedbackResponse(BaseModel):
    feedback_id: int
    conversation_id: str
    stored: bool = Field(description="False when this was a retry of feedback already stored.")


class BattleRequest(BaseModel):
    """Start a battle: two anonymous deployed models answer the same user side by side."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(
        min_length=1,
        max_length=200,
        description="The app's id of the user. A developer's Guanaco name here marks that user as the "
        "developer: their votes on their own models are stored but not counted.",
    )
    user_name: str = Field(default="User", min_length=1, max_length=100)
    bot_name: str = Field(default="Bot", min_length=1, max_length=100)
    memory: str = Field(default="", max_length=8000)
    prompt: str = Field(default="", max_length=8000)


class BattleResponse(BaseModel):
    """The battle and its two conversations; which models answer stays hidden until the vote."""

    battle_id: str
    conversation_a_id: str
    conversation_b_id: str


class BattleMessageResponse(BaseModel):
    """Both sides' replies to the user's message, asked at the same time."""

    battle_id: str
    reply_a: str
    reply_b: str
    latency_a_s: float
    latency_b_s: float


class BattleRegenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    side: Literal["a", "b"]


class BattleRegenerateResponse(BaseModel):
    """The side's new reply; the one it replaces is kept, marked regenerated."""

    battle_id: str
    side: Literal["a", "b"]
    reply: str
    latency_s: float


class BattleVoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    winner: Literal["a", "b", "tie", "both_bad"]


class RevealedModel(BaseModel):
    submission_id: str
    model_name: str


class BattleVoteResponse(BaseModel):
    """The stored vote, and who was who."""

    battle_id: str
    winner: Literal["a", "b", "tie", "both_bad"]
    model_a: RevealedModel
    model_b: RevealedModel
    counted: bool = Field(description="Whether ratings use this vote.")
    excluded_reason: str | None = Field(
        description="Why not: `own_model` (the voter developed one of the models), `repeat_pair` (the "
        "voter already has a counted vote on these two models) or `same_model` (both sides ended on one "
        "model after failing over)."
    )
    stored: bool = Field(description="False when this was a retry of a vote already stored.")


class Competition(BaseModel):
    """A time window over the leaderboard, in the shape chaiverse's `get_competitions` returns."""

    id: str
    type: str = Field(description="chaiverse's competition type: ranks on thumbs-up ratio from feedback.")
    submission_start_date: datetime
    submission_end_date: datetime
    start_time: datetime = Field(description="Feedback counts from here...")
    end_time: datetime = Field(description="...to here.")
    submissions: list[str] = Field(description="Models submitted in the window that reached users.")
    leaderboard: list[LeaderboardRow] = Field(description="Those models, ranked (provisional ones last).")


class Evaluation(BaseModel):
    """Where one of your models stands: its leaderboard row, latency test and feedback summary."""

    submission_id: str
    status: str
    min_feedback: int = Field(description="Feedback a model needs before it is ranked among rated models.")
    leaderboard: LeaderboardRow | None = Field(description="None until the model has reached users.")
    latency: dict | None = Field(description="The stress test's report (`latency_report`).")
    feedback_summary: dict | None = Field(description="The latest `feedback_summary`.")


class DeveloperInfo(BaseModel):
    """Who a developer key belongs to."""

    developer: str
    submissions: int


class ScrapeTargetGroup(BaseModel):
    """One model server in Prometheus' HTTP service discovery format (`http_sd_configs`)."""

    targets: list[str] = Field(description="`host:port` of the server.")
    labels: dict[str, str] = Field(
        description="`__scheme__`, `__metrics_path__`, `submission_id` and `model_name`."
    )


class BetaPageSession(BaseModel):
    """The tester an invite lets into the beta web page, and whether they have consented yet."""

    user_id: str = Field(description="The pseudonymous user id the page chats and votes as.")
    name: str = Field(description="The name the operator gave the invite.")
    expires_at: datetime
    consented: bool
    consent_notice: str = Field(description="What the tester agrees to before chatting.")
