"""A submission's feedback report: summary statistics plus anonymised sample conversations."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from guanaco_dagster.arena.implicit_signals import implicit_signals
from guanaco_dagster.feedback.anonymise import mask_pii, pseudonymise
from guanaco_dagster.feedback.category_config import DEFAULT_CATEGORY_METHOD, CategoryMethod
from guanaco_dagster.feedback.feedback_metrics import FeedbackItem, summarise_feedback
from guanaco_dagster.feedback.text_hygiene import clean_line, clean_text
from guanaco_dagster.store.models import Conversation, Feedback, FeedbackSummaryRow, utcnow

SAMPLE_CONVERSATIONS = 3


def anonymised_conversation(
    conversation: Conversation, feedback: Feedback | None, pseudonym_key: bytes
) -> dict[str, object]:
    """A conversation as a developer may see it: pseudonymous user, PII masked, control characters gone."""
    user = pseudonymise(conversation.user_id, salt=conversation.submission_id, key=pseudonym_key)
    bot_name = clean_line(conversation.bot_name)
    return {
        "conversation_id": conversation.id,
        "user": user,
        "bot_name": bot_name,
        "messages": [
            {
                "sender": bot_name if m.sender == "bot" else user,
                "from_bot": m.sender == "bot",
                "content": mask_pii(clean_text(m.content)),
                "sent_date": m.sent_at.isoformat(),
                "deleted": m.deleted,
            }
            for m in conversation.messages
        ],
        "thumbs_up": feedback.thumbs_up if feedback else None,
        "text": mask_pii(clean_text(feedback.text)) if feedback else "",
    }


def feedback_with_conversations(session: Session, submission_id: str) -> list[Feedback]:
    """A submission's feedback, oldest first, with each conversation and its messages loaded."""
    return list(
        session.scalars(
            select(Feedback)
            .where(Feedback.submission_id == submission_id)
            .options(selectinload(Feedback.conversation).selectinload(Conversation.messages))
            .order_by(Feedback.id)
        )
    )


def build_feedback_report(
    session: Session,
    submission_id: str,
    pseudonym_key: bytes,
    category_method: CategoryMethod = DEFAULT_CATEGORY_METHOD,
) -> dict[str, object]:
    """Summary statistics, implicit signals (conversation length, regenerations, early exits) and the newest
    few anonymised conversations of one submission."""
    feedback = feedback_with_conversations(session, submission_id)
    items = [
        FeedbackItem(
            conversation_id=f.conversation_id,
            thumbs_up=f.thumbs_up,
            text=f.text,
            categories=f.categories,
            # A reply the user had regenerated is not part of the conversation they went on with.
            messages=[
                (m.sender, m.content) for m in f.conversation.messages if not m.deleted and not m.regenerated
            ],
        )
        for f in feedback
    ]
    summary = summarise_feedback(items, category_method)
    signals = implicit_signals(session, [submission_id])[submission_id]
    samples = [
        anonymised_conversation(f.conversation, f, pseudonym_key) for f in feedback[-SAMPLE_CONVERSATIONS:]
    ]
    return {
        "submission_id": submission_id,
        "summary": summary.to_dict(),
        "implicit_signals": signals.to_dict(),
        "markdown": summary.to_markdown() + "\n" + signals.to_markdown(),
        "sample_conversations": samples,
        "last_feedback_id": feedback[-1].id if feedback else None,
    }


def save_feedback_report(session: Session, submission_id: str, report: dict[str, object]) -> None:
    """Store the report as the submission's latest feedback summary."""
    row = session.get(FeedbackSummaryRow, submission_id)
    count = int(report["summary"]["feedback_count"])  # type: ignore[index]
    if row is None:
        session.add(FeedbackSummaryRow(submission_id=submission_id, feedback_count=count, summary=report))
    else:
        row.feedback_count, row.summary, row.computed_at = count, report, utcnow()


def submissions_with_new_feedback(session: Session) -> dict[str, int]:
    """Submission id → feedback count, for submissions whose stored summary is missing or out of date."""
    counts = dict(
        session.execute(select(Feedback.submission_id, func.count()).group_by(Feedback.submission_id)).all()
    )
    summarised = dict(
        session.execute(select(FeedbackSummaryRow.submission_id, FeedbackSummaryRow.feedback_count)).all()
    )
    return {sid: n for sid, n in counts.items() if summarised.get(sid) != n}


def stale_summaries_oldest_first(session: Session, limit: int) -> list[str]:
    """Up to `limit` submissions whose summary is missing or out of date, the longest-waiting first.

    Missing summaries come first, then the oldest: under steady feedback every stale summary reaches the
    front of the queue, whatever the batch size.
    """
    stale = submissions_with_new_feedback(session)
    if not stale:
        return []
    computed = dict(
        session.execute(
            select(FeedbackSummaryRow.submission_id, FeedbackSummaryRow.computed_at).where(
                FeedbackSummaryRow.submission_id.in_(list(stale))
            )
        ).all()
    )
    waiting = sorted(stale, key=lambda sid: (sid in computed, computed.get(sid), sid))
    return waiting[:limit]
