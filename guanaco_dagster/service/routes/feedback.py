"""Developer routes for feedback and the leaderboard."""

from __future__ import annotations

import re

from fastapi import APIRouter

from guanaco_dagster.feedback.feedback_report import anonymised_conversation, feedback_with_conversations
from guanaco_dagster.feedback.leaderboard import build_leaderboard
from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.service.dependencies import DeveloperDep, SessionDep
from guanaco_dagster.service.routes.models import owned_submission
from guanaco_dagster.service.schemas import (
    ConversationFeedback,
    FeedbackMessage,
    FeedbackResponse,
    FeedbackSender,
)
from guanaco_dagster.store.models import Conversation, FeedbackSummaryRow

router = APIRouter(tags=["feedback"])


def chai_conversation_key(conversation: Conversation, user_pseudonym: str) -> str:
    """`_bot_<bot>_<user>_<conversation>`: chaiverse splits keys on '_' to find the bot and the user."""
    bot = re.sub(r"[^A-Za-z0-9-]", "-", conversation.bot_id or "bot") or "bot"
    return f"_bot_{bot}_{user_pseudonym}_{conversation.id}"


@router.get("/feedback/{submission_id}", response_model=FeedbackResponse, summary="Feedback, anonymised")
def feedback(submission_id: str, session: SessionDep, developer: DeveloperDep) -> FeedbackResponse:
    """Every conversation with feedback: users pseudonymised per submission, e-mails/phones/URLs masked."""
    submission = owned_submission(session, developer, submission_id)
    conversations: dict[str, ConversationFeedback] = {}
    thumbs_up = thumbs_down = 0
    for row in feedback_with_conversations(session, submission.id):
        # The same anonymisation as the feedback summary: one place decides what developers see.
        shown = anonymised_conversation(row.conversation, row)
        conversations[chai_conversation_key(row.conversation, shown["user"])] = ConversationFeedback(
            messages=[
                FeedbackMessage(
                    content=m["content"],
                    sender=FeedbackSender(name=m["sender"]),
                    sent_date=m["sent_date"],
                    deleted=m["deleted"],
                )
                for m in shown["messages"]
            ],
            thumbs_up=row.thumbs_up,
            text=shown["text"],
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
