"""`guanaco feedback` and `guanaco leaderboard`: what beta users said, and how models rank on it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from guanaco_dagster.cli.common import open_client, print_json, reports_errors, shown, stdout, styled_status
from guanaco_dagster.cli.console import summary_table
from guanaco_dagster.feedback.text_hygiene import clean_text

if TYPE_CHECKING:
    import pandas as pd

    from guanaco_dagster.service.schemas import FeedbackResponse

SAMPLE_CONVERSATIONS = 3
RATE_COLUMN = "ratio (95% interval)"
ELO_COLUMN = "Elo (95% interval)"
PROVISIONAL_NOTE = (
    "* provisional: too little feedback yet to be ranked among rated models; "
    "† battle rating from too few battles yet"
)


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
        # The SDK's `feedback_frame`: the same rows a script gets, with chaiverse's column names.
        from guanaco_dagster.cli.frames import feedback_frame

        # CSV reaches terminals too: the same cleaning as the table (newlines stay, inside quotes).
        frame = feedback_frame(response).map(
            lambda value: clean_text(value) if isinstance(value, str) else value
        )
        frame.to_csv(sys.stdout, index=False)
    else:
        _print_feedback(stdout(), submission_id, response)


def _print_feedback(out: Console, submission_id: str, response: FeedbackResponse) -> None:
    count = len(response.feedback)
    out.print(
        f"[bold]{shown(submission_id)}[/]: {count} conversations with feedback — "
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
        text = f" “{shown(conversation.text, multiline=True)}”" if conversation.text else ""
        out.print(f"\n{_thumb(conversation.thumbs_up)}{text}  [dim]{shown(key)}[/]")
        for message in conversation.messages:
            if not message.deleted:
                out.print(
                    f"  [cyan]{shown(message.sender.name)}:[/] {shown(message.content, multiline=True)}"
                )


def _number(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if _missing(value) else pattern.format(value)


@reports_errors
def leaderboard(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON keyed by submission id.")] = False,
) -> None:
    """Every model that reached users, ranked on feedback, engagement, repetition and latency, with its
    battle rating (public)."""
    from guanaco_dagster.cli.frames import leaderboard_frame

    # The leaderboard is public: no key needed.
    with open_client(needs_key=False) as client:
        board = leaderboard_frame(client.leaderboard())
    if as_json:
        # JSON has null, not NaN: the frame's missing numbers go out as None.
        records = board.astype(object).where(board.notna(), None).to_dict(orient="records")
        print_json({row["submission_id"]: row for row in records})
        return
    out = stdout()
    if board.empty:
        out.print("the leaderboard is empty: no model has reached users yet")
        return
    out.print(leaderboard_table(board))


def leaderboard_table(board: pd.DataFrame) -> Table:
    """The leaderboard frame (`leaderboard_frame`) as the table `guanaco leaderboard` prints."""
    table = Table(title="Leaderboard", caption=PROVISIONAL_NOTE)
    for column in ("rank", "submission id", "model", "developer", "status", "👍 / 👎", RATE_COLUMN):
        table.add_column(column, no_wrap=column in ("submission id", RATE_COLUMN))
    for column in ("conv. length", "repetition", "p95 latency", ELO_COLUMN, "battles won"):
        table.add_column(column, justify="right", no_wrap=column == ELO_COLUMN)
    for row in board.itertuples(index=False):
        table.add_row(
            f"{row.overall_rank}{'*' if row.provisional else ''}",
            shown(row.submission_id),
            shown(row.model_name),
            shown(row.developer),
            styled_status(row.status),
            f"{row.thumbs_up} / {row.thumbs_down}",
            _rate(row.thumbs_up_ratio, row.wilson_lower_bound, row.wilson_upper_bound),
            _number(row.mean_conversation_length, "{:.1f}"),
            _number(row.repetition_score),
            _number(row.latency_p95_s, "{:.2f} s"),
            _elo(row.elo_rating, row.bt_ci_low, row.bt_ci_high, row.battles_provisional),
            "–" if _missing(row.num_battles) else f"{int(row.num_wins)} / {int(row.num_battles)}",
        )
    return table


def _elo(elo: float | None, low: float | None, high: float | None, provisional: object) -> str:
    """ "1034 (980–1090)": the battle rating with its 95% interval; † when it rests on too few battles."""
    if _missing(elo):
        return "–"
    marker = "†" if not _missing(provisional) and bool(provisional) else ""
    return f"{elo:.0f} ({low:.0f}–{high:.0f}){marker}"


def _rate(ratio: float | None, low: float | None, high: float | None) -> str:
    """ "0.67 (0.30–0.90)": the thumbs-up ratio with its Wilson interval."""
    if _missing(ratio):
        return "–"
    return f"{ratio:.2f} ({low:.2f}–{high:.2f})"


def _missing(value: object) -> bool:
    # A frame holds NaN where the service sent null.
    return value is None or value != value
