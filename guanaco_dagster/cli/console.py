"""Human-facing rendering shared by the demo and the CLI: live stage progress and the stage waterfall."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from guanaco_dagster.feedback.text_hygiene import clean_line
from guanaco_dagster.submissions.lifecycle import PIPELINE_STAGES, Status
from guanaco_dagster.submissions.waterfall import StageRow

TARGET_S = 300.0  # the promise: first feedback within five minutes of submission


class StageProgress:
    """A rich progress display with one line per pipeline stage, fed with status snapshots."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<16}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks = {
            stage: self.progress.add_task(str(stage), total=1, start=False, note="")
            for stage in PIPELINE_STAGES
        }

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def update(self, status: str, rows: Sequence[StageRow]) -> None:
        """Reflect the stages' state: started ones tick, finished ones show their duration."""
        for row in rows:
            task = self.tasks.get(Status(row.stage))
            if task is None:
                continue
            self.progress.start_task(task)
            if row.duration_s is not None:
                mark = "✓" if row.succeeded else "✗"
                self.progress.update(task, completed=1, note=f"{mark} {row.duration_s:.1f} s")
                self.progress.stop_task(task)
        if status == Status.FAILED:
            for task in self.tasks.values():
                self.progress.stop_task(task)


def waterfall_table(
    rows: Sequence[StageRow], extra: Sequence[tuple[str, float]] = (), target_s: float = TARGET_S
) -> Table:
    """Each stage's start and duration since submission, as bars against the target."""
    table = Table(title=f"Stage waterfall (target: first feedback within {target_s:.0f} s)")
    for column in ("stage", "starts at", "took", "timeline"):
        table.add_column(column, justify="right" if column in ("starts at", "took") else "left")
    width = 40
    scale = width / max(
        [target_s, *(r.start_offset_s + (r.duration_s or 0) for r in rows), *(t for _, t in extra)]
    )
    for row in rows:
        duration = row.duration_s or 0.0
        lead = int(row.start_offset_s * scale)
        bar = " " * lead + "█" * max(1, int(duration * scale))
        style = "red" if row.succeeded is False else "green"
        table.add_row(
            escape(clean_line(row.stage)),
            f"{row.start_offset_s:.1f} s",
            f"{duration:.1f} s",
            f"[{style}]{bar}[/]",
        )
    for label, at_s in extra:
        table.add_row(label, f"{at_s:.1f} s", "", " " * int(at_s * scale) + "◆")
    return table


def summary_table(summary: dict) -> Table:
    """The feedback summary's numbers and categories as a table."""
    table = Table(title="Feedback summary")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("feedback", str(summary["feedback_count"]))
    table.add_row("👍 / 👎", f"{summary['thumbs_up']} / {summary['thumbs_down']}")
    table.add_row(
        "thumbs-up ratio (Wilson 95 %)",
        f"{summary['thumbs_up_ratio']:.2f} [{summary['wilson_low']:.2f}, {summary['wilson_high']:.2f}]",
    )
    table.add_row("mean conversation length", f"{summary['mean_conversation_length']:.1f} messages")
    table.add_row("repetition (consecutive bot replies)", f"{summary['repetition_score']:.2f}")
    for category, count in summary["category_counts"].items():
        table.add_row(f"category: {escape(clean_line(category))}", str(count))
    return table
