"""`guanaco feedback` and `guanaco leaderboard`: what beta users said, and how models rank on it."""

from __future__ import annotations

import csv
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from guanaco_dagster.cli.common import open_client, print_json, reports_errors, stdout, styled_status
from guanaco_dagster.cli.console import summary_table

if TYPE_CHECKING:
    from guanaco_dagster.service.schemas import ConversationFeedback, FeedbackResponse

SAMPLE_CONVERSATIONS = 3


def conversation_text(conversation: ConversationFeedback) -> str:
    """A conversation as "sender: message" lines, deleted messages left out."""
    return "\n".join(f"{m.sender.name}: {m.content}" for m in conversation.messages if not m.deleted)


def _thumb(thumbs_up: bool) -> str:
    return "👍" if thumbs_up else "👎"


@reports_errors
def feedback(
    submission_id: Annotated[str, typer.Argument(help="The submission whose feedback to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON (Chai's shape).")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print one CSV row per conversation.")] = False,
) -> None:
    """What beta users said about your model: summary statistics and sample conversations (anonymised)."""
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--csv")
    with open_client() as client:
        response = client.feedback(submission_id)
    if as_json:
        print_json(response.model_dump(mode="json"))
    elif as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["conversation", "thumbs_up", "text", "conversation_text"])
        for key, conversation in response.feedback.items():
            writer.writerow([key, conversation.thumbs_up, conversation.text, conversation_text(conversation)])
    else:
        _print_feedback(stdout(), submission_id, response)


def _print_feedback(out: Console, submission_id: str, response: FeedbackResponse) -> None:
    count = len(response.feedback)
    out.print(
        f"[bold]{escape(submission_id)}[/]: {count} conversations with feedback — "
        f"👍 {response.thumbs_up} / 👎 {response.thumbs_down}"
    )
    if count == 0:
        out.print("no feedback yet: beta users are routed to deployed models that need it most")
        return
    if response.summary:
        out.print(summary_table(response.summary))
    else:
        out.print("[dim]no summary yet: it is computed shortly after new feedback arrives[/]")
    newest = list(response.feedback.items())[-SAMPLE_CONVERSATIONS:]
    out.print(f"[bold]newest {len(newest)} conversations[/]")
    for key, conversation in reversed(newest):
        text = f" “{escape(conversation.text)}”" if conversation.text else ""
        out.print(f"\n{_thumb(conversation.thumbs_up)}{text}  [dim]{escape(key)}[/]")
        for message in conversation.messages:
            if not message.deleted:
                out.print(f"  [cyan]{escape(message.sender.name)}:[/] {escape(message.content)}")


def _number(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


@reports_errors
def leaderboard(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON keyed by submission id.")] = False,
) -> None:
    """Every model that served users, ranked on feedback, engagement, repetition and latency."""
    with open_client() as client:
        entries = client.leaderboard()
    ordered = sorted(
        entries.items(), key=lambda item: (item[1].overall_rank is None, item[1].overall_rank or 0)
    )
    if as_json:
        print_json({sid: entry.to_dict() for sid, entry in ordered})
        return
    out = stdout()
    if not ordered:
        out.print("the leaderboard is empty: no model has served users yet")
        return
    table = Table(title="Leaderboard")
    for column in ("rank", "submission id", "model", "developer", "status", "👍 / 👎", "ratio ± se"):
        table.add_column(column, no_wrap=column == "submission id")
    table.add_column("wilson low", justify="right")
    for column in ("conv. length", "repetition", "p95 latency"):
        table.add_column(column, justify="right")
    for submission_id, entry in ordered:
        ratio = (
            "–"
            if entry.thumbs_up_ratio is None
            else f"{entry.thumbs_up_ratio:.2f} ± {_number(entry.thumbs_up_ratio_se)}"
        )
        table.add_row(
            _number(entry.overall_rank, "{}"),
            escape(submission_id),
            escape(entry.model_name),
            escape(entry.developer),
            styled_status(entry.status),
            f"{entry.thumbs_up} / {entry.thumbs_down}",
            ratio,
            _number(entry.wilson_lower_bound),
            _number(entry.mean_conversation_length, "{:.1f}"),
            _number(entry.repetition_score),
            _number(entry.latency_p95_s, "{:.2f} s"),
        )
    out.print(table)
