"""The Guanaco store's tables: developers, submissions and their stages, conversations, feedback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the store uses."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that comes back timezone-aware (UTC) from every backend, SQLite included."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base: timestamps are UTC-aware, dicts are JSON."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Developer(Base):
    __tablename__ = "developers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # sha256 of the key: keys are random 256-bit tokens, so a fast hash is enough and lookups stay O(1).
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Submission(Base):
    __tablename__ = "submissions"

    # `seq` orders submissions for the sensor; `id` is the public id and the Dagster partition key.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    developer_id: Mapped[int] = mapped_column(ForeignKey("developers.id"), index=True)
    model_repo: Mapped[str] = mapped_column(String(200))
    requested_revision: Mapped[str] = mapped_column(String(200), default="main")
    resolved_revision: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(200))
    generation_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    formatter: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # `auto` (the model's chat template) or a formatter: see submissions/chat_format.py; None: undecided.
    chat_format: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True, default="pending")
    failure_reason: Mapped[str | None] = mapped_column(Text)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    artifact_uri: Mapped[str | None] = mapped_column(String(500))
    endpoint_url: Mapped[str | None] = mapped_column(String(500))
    served_model_name: Mapped[str | None] = mapped_column(String(200))
    # The model server's last health check (guanaco_dagster/beta/health.py); null = never checked.
    health_ok: Mapped[bool | None] = mapped_column(Boolean)
    health_checked_at: Mapped[datetime | None]
    health_failed_since: Mapped[datetime | None]
    health_detail: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    developer: Mapped[Developer] = relationship()
    events: Mapped[list[SubmissionEvent]] = relationship(
        order_by="SubmissionEvent.id", cascade="all, delete-orphan"
    )
    stages: Mapped[list[StageTiming]] = relationship(order_by="StageTiming.id", cascade="all, delete-orphan")


class SubmissionEvent(Base):
    """One status transition (the submission's log): every status change is timestamped here."""

    __tablename__ = "submission_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class StageTiming(Base):
    """Start and end of one pipeline stage (an asset) for one submission."""

    __tablename__ = "stage_timings"
    __table_args__ = (UniqueConstraint("submission_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    succeeded: Mapped[bool | None] = mapped_column(Boolean)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(200))
    bot_id: Mapped[str] = mapped_column(String(200), default="")
    bot_name: Mapped[str] = mapped_column(String(100), default="Bot")
    user_name: Mapped[str] = mapped_column(String(100), default="User")
    memory: Mapped[str] = mapped_column(Text, default="")
    prompt: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    messages: Mapped[list[Message]] = relationship(order_by="Message.id", cascade="all, delete-orphan")
    feedback: Mapped[Feedback | None] = relationship(back_populates="conversation")


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    sender: Mapped[str] = mapped_column(String(8))  # "user" or "bot"
    content: Mapped[str] = mapped_column(Text)
    latency_s: Mapped[float | None] = mapped_column(Float)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # A bot reply the user asked to have again (an implicit "not good enough" signal).
    regenerated: Mapped[bool] = mapped_column(Boolean, default=False)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feedback(Base):
    """Thumbs up/down and text left at the end of one conversation."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), unique=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    thumbs_up: Mapped[bool] = mapped_column(Boolean)
    text: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    # A client retrying the same post sends the same key and gets the stored row back.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    # Categories of `text`, assigned by the service as the feedback arrives (it keeps the embedding model
    # loaded, so summaries never load it); None for rows stored another way: the summary categorises those.
    categories: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="feedback")


class FeedbackSummaryRow(Base):
    """The latest feedback summary of a submission, written by the `feedback_summary` asset."""

    __tablename__ = "feedback_summaries"

    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    feedback_count: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column()
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class LatencyReportRow(Base):
    """The stress-test numbers of a submission's deployment, written by `latency_report`."""

    __tablename__ = "latency_reports"

    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[dict[str, Any]] = mapped_column()
    measured_at: Mapped[datetime] = mapped_column(default=utcnow)


class LifecycleRequest(Base):
    """A developer's request to deactivate, tear down or redeploy a model, carried out by a Dagster job."""

    __tablename__ = "lifecycle_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # "deactivate", "teardown" or "redeploy"
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)


class Battle(Base):
    """Two anonymous models answering the same user side by side: one conversation each, same messages."""

    __tablename__ = "battles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    conversation_a_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), unique=True)
    conversation_b_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    vote: Mapped[BattleVote | None] = relationship(back_populates="battle")


class BattleVote(Base):
    """A user's verdict on one battle. Every vote is kept; `counted` says whether ratings use it and
    `excluded_reason` why not (a repeat of the same pair by the same user, the developer's own model, a
    user flagged as anomalous)."""

    __tablename__ = "battle_votes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("battles.id"), unique=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    # Denormalised from the battle's conversations so ratings read one table.
    submission_a_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    submission_b_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    winner: Mapped[str] = mapped_column(String(8))  # "a", "b", "tie" or "both_bad"
    counted: Mapped[bool] = mapped_column(Boolean, default=True)
    excluded_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    battle: Mapped[Battle] = relationship(back_populates="vote")


class BetaInvite(Base):
    """An operator's invitation to the beta web page: a bearer token (stored only as its hash) that lets one
    tester chat and vote as `web-<id>` until it expires or is revoked, once they have consented."""

    __tablename__ = "beta_invites"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Who the operator gave it to; never shown to developers or sent to models.
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # When the tester agreed that their conversations are shared anonymised with model developers.
    consented_at: Mapped[datetime | None]
