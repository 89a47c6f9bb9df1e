"""Developer routes for feedback and the leaderboard."""

from __future__ import annotations

import re

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from guanaco_dagster.domain.anonymise import mask_pii, pseudonymise
from guanaco_dagster.domain.leaderboard import LeaderboardRow, build_leaderboard
from guanaco_dagster.service.dependencies import DeveloperDep, SessionDep
from guanaco_dagster.service.routes.models import owned_submission
from guanaco_dagster.service.schemas import (
    ConversationFeedback,
    FeedbackMessage,
    FeedbackResponse,
    FeedbackSender,
)
from guanaco_dagster.store.models import Conversation, Feedback, FeedbackSummaryRow

router = APIRouter(tags=["feedback"])


def chai_conversation_key(conversation: Conversation, user_pseudonym: str) -> str:
    """`_bot_<bot>_<user>_<conversation>`: chaiverse splits keys on '_' to find the bot and the user."""
    bot = re.sub(r"[^A-Za-z0-9-]", "-", conversation.bot_id or "bot") or "bot"
    return f"_bot_{bot}_{user_pseudonym}_{conversation.id}"


@router.get("/feedback/{submission_id}", response_model=FeedbackResponse, summary="Feedback, anonymised")
def feedback(submission_id: str, session: SessionDep, developer: DeveloperDep) -> FeedbackResponse:
    """Every conversation with feedback: users pseudonymised per submission, e-mails/phones/URLs masked."""
    submission = owned_submission(session, developer, submission_id)
    rows = session.scalars(
        select(Feedback)
        .where(Feedback.submission_id == submission.id)
        .options(selectinload(Feedback.conversation).selectinload(Conversation.messages))
        .order_by(Feedback.id)
    )
    conversations: dict[str, ConversationFeedback] = {}
    thumbs_up = thumbs_down = 0
    for row in rows:
        conversation = row.conversation
        user = pseudonymise(conversation.user_id, salt=submission.id)
        conversations[chai_conversation_key(conversation, user)] = ConversationFeedback(
            messages=[
                FeedbackMessage(
                    content=mask_pii(m.content),
                    sender=FeedbackSender(name=conversation.bot_name if m.sender == "bot" else user),
                    sent_date=m.sent_at,
                    deleted=m.deleted,
                )
                for m in conversation.messages
            ],
            thumbs_up=row.thumbs_up,
            text=mask_pii(row.text),
            model_name=submission.model_name,
            public=row.public,
        )
        thumbs_up += row.thumbs_up
        thumbs_down += not row.thumbs_up
    summary_row = session.get(FeedbackSummaryRow, submission.id)
    return FeedbackResponse(
        feedback=conversations,
        thumbs_up=thumbs_up,
        thumbs_down=thumbs_down,
        summary=summary_row.summary["summary"] if summary_row else None,
    )


@router.get("/leaderboard", response_model=dict[str, LeaderboardRow], summary="Every model that served users")
def leaderboard(session: SessionDep, _developer: DeveloperDep) -> dict[str, LeaderboardRow]:
    """Keyed by submission id (chaiverse's shape), best overall rank first."""
    return {row.submission_id: row for row in build_leaderboard(session)}
