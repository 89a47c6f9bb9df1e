"""Developer route for feedback, in the shape Chai's client (chaiverse) reads."""

from __future__ import annotations

import re

from fastapi import APIRouter

from guanaco_dagster.feedback.feedback_report import anonymised_conversation, feedback_with_conversations
from guanaco_dagster.service.dependencies import DeveloperDep, PseudonymKeyDep, SessionDep
from guanaco_dagster.service.routes.models import owned_submission
from guanaco_dagster.service.schemas import (
    ConversationFeedback,
    FeedbackMessage,
    FeedbackResponse,
    FeedbackSender,
)
from guanaco_dagster.store.models import Feedback, FeedbackSummaryRow

router = APIRouter(tags=["feedback"])


def chai_bot_uid(bot_id: str | None) -> str:
    """`_bot_<bot>`: the bot part of a Chai-style id, with `_` and odd characters replaced by `-`."""
    return f"_bot_{re.sub(r'[^A-Za-z0-9-]', '-', bot_id or 'bot') or 'bot'}"


def chai_conversation_keys(feedback: list[Feedback], pseudonyms: list[str]) -> list[str]:
    """`_bot_<bot>_<user>_<epoch seconds of the feedback>`, one per feedback, unique.

    chaiverse splits on '_': parts 0-2 are the bot, part 3 the user, the last part an integer epoch. Two
    feedbacks of one user on one bot within a second would share a key, so the later one moves on a second.
    """
    keys: list[str] = []
    taken: set[str] = set()
    for row, user in zip(feedback, pseudonyms, strict=True):
        epoch = int(row.created_at.timestamp())
        prefix = f"{chai_bot_uid(row.conversation.bot_id)}_{user}_"
        while f"{prefix}{epoch}" in taken:
            epoch += 1
        taken.add(f"{prefix}{epoch}")
        keys.append(f"{prefix}{epoch}")
    return keys


@router.get("/feedback/{submission_id}", response_model=FeedbackResponse, summary="Feedback, anonymised")
def feedback(
    submission_id: str, session: SessionDep, developer: DeveloperDep, pseudonym_key: PseudonymKeyDep
) -> FeedbackResponse:
    """Every conversation with feedback: users pseudonymised per submission, e-mails/phones/URLs masked."""
    submission = owned_submission(session, developer, submission_id)
    rows = feedback_with_conversations(session, submission.id)
    # The same anonymisation as the feedback summary: one place decides what developers see.
    shown = [anonymised_conversation(row.conversation, row, pseudonym_key) for row in rows]
    keys = chai_conversation_keys(rows, [s["user"] for s in shown])
    conversations: dict[str, ConversationFeedback] = {}
    for key, row, conversation in zip(keys, rows, shown, strict=True):
        bot_uid = chai_bot_uid(row.conversation.bot_id)
        conversations[key] = ConversationFeedback(
            conversation_id=key,
            messages=[
                FeedbackMessage(
                    content=m["content"],
                    sender=FeedbackSender(
                        name=m["sender"], uid=bot_uid if m["from_bot"] else conversation["user"]
                    ),
                    sent_date=m["sent_date"],
                    deleted=m["deleted"],
                )
                for m in conversation["messages"]
            ],
            thumbs_up=row.thumbs_up,
            text=conversation["text"],
            model_name=submission.model_name,
            public=row.public,
        )
    up = sum(row.thumbs_up for row in rows)
    summary_row = session.get(FeedbackSummaryRow, submission.id)
    return FeedbackResponse(
        feedback=conversations,
        thumbs_up=up,
        thumbs_down=len(rows) - up,
        summary=summary_row.summary["summary"] if summary_row else None,
    )
