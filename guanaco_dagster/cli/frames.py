"""The service's answers as pandas DataFrames: feedback, conversations and the leaderboard.

The SDK (`GuanacoClient.feedback_frame` and friends) and the CLI (`guanaco feedback --csv`, the leaderboard
table) build on these, so a script and the terminal see the same rows. The feedback frame has the columns
of chaiverse's `Feedback.df`. pandas is imported here only: nothing on `guanaco --help`'s path imports this
module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
    from guanaco_dagster.service.schemas import ConversationFeedback, FeedbackResponse

FEEDBACK_COLUMNS = [
    "conversation_id",
    "bot_id",
    "user_id",
    "conversation",
    "thumbs_up",
    "feedback",
    "model_name",
    "public",
    "message_count",
    "feedback_at",
]
MESSAGE_COLUMNS = [
    "conversation_id",
    "position",
    "sender",
    "sender_uid",
    "from_bot",
    "content",
    "sent_date",
    "deleted",
]


def conversation_text(conversation: ConversationFeedback) -> str:
    """The conversation as "sender: message" lines in time order, deleted messages tagged (as chaiverse)."""
    lines = []
    for message in sorted(conversation.messages, key=lambda m: m.sent_date):
        sender = message.sender.name.strip() + (" (deleted)" if message.deleted else "")
        lines.append(f"{sender}: {message.content.strip()}")
    return "\n".join(lines)


def feedback_frame(response: FeedbackResponse) -> pd.DataFrame:
    """One row per conversation with feedback, oldest first: who, what was said, thumbs and text."""
    rows = []
    for key, conversation in response.feedback.items():
        parts = key.split("_")
        rows.append(
            {
                "conversation_id": key,
                "bot_id": "_".join(parts[:3]),
                "user_id": parts[3],
                "conversation": conversation_text(conversation),
                "thumbs_up": conversation.thumbs_up,
                "feedback": conversation.text,
                "model_name": conversation.model_name,
                "public": conversation.public,
                "message_count": sum(not m.deleted for m in conversation.messages),
                "feedback_at": datetime.fromtimestamp(int(parts[-1]), UTC),
            }
        )
    return pd.DataFrame(rows, columns=FEEDBACK_COLUMNS)


def conversations_frame(response: FeedbackResponse) -> pd.DataFrame:
    """One row per message of every conversation with feedback, in conversation and time order."""
    rows = [
        {
            "conversation_id": key,
            "position": position,
            "sender": message.sender.name,
            "sender_uid": message.sender.uid,
            "from_bot": message.sender.uid.startswith("_bot"),
            "content": message.content,
            "sent_date": message.sent_date,
            "deleted": message.deleted,
        }
        for key, conversation in response.feedback.items()
        for position, message in enumerate(sorted(conversation.messages, key=lambda m: m.sent_date))
    ]
    return pd.DataFrame(rows, columns=MESSAGE_COLUMNS)


def leaderboard_frame(rows: dict[str, LeaderboardRow]) -> pd.DataFrame:
    """One row per model in rank order (rated models first, then provisional ones), indexed by rank."""
    from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow

    columns = list(LeaderboardRow.__dataclass_fields__)
    frame = pd.DataFrame([row.to_dict() for row in rows.values()], columns=columns)
    frame = frame.sort_values("overall_rank", na_position="last", kind="stable")
    return frame.set_index("overall_rank", drop=False).rename_axis("rank")
