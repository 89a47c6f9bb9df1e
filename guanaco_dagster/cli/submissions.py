"""Submission commands: submit (and follow it live), list, status, logs, and the lifecycle actions
(deactivate, teardown, redeploy)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from guanaco_dagster.cli.common import (
    SETTLED_STATUSES,
    as_utc,
    fail,
    open_client,
    print_json,
    reports_errors,
    shown,
    stderr,
    stdout,
    styled_status,
    timestamp,
)
from guanaco_dagster.cli.console import StageProgress, waterfall_table
from guanaco_dagster.cli.presets import FORMATTER_PRESETS
from guanaco_dagster.feedback.text_hygiene import clean_text
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.waterfall import StageRow

if TYPE_CHECKING:
    from guanaco_dagster.cli.client import GuanacoClient
    from guanaco_dagster.service.schemas import LifecycleResponse, SubmissionInfo

POLL_INTERVAL_S = 0.75
NEW_SUBMISSION_GRACE_S = 5.0


def stage_rows(info: SubmissionInfo) -> list[StageRow]:
    """The submission's stages as waterfall rows, offsets in seconds since it was submitted."""
    submitted_at = as_utc(info.timestamp)
    return [
        StageRow(
            stage=stage.stage,
            start_offset_s=round((as_utc(stage.started_at) - submitted_at).total_seconds(), 3),
            duration_s=stage.duration_s,
            succeeded=stage.succeeded,
        )
        for stage in sorted(info.stages, key=lambda s: s.started_at)
    ]


def _waterfall(info: SubmissionInfo) -> Table:
    extra = [("deployed", info.time_to_deployed_s)] if info.time_to_deployed_s is not None else []
    return waterfall_table(stage_rows(info), extra=extra)


def _generation_params(**options: Any) -> dict[str, Any]:
    """Only the parameters the user set: the service fills in its defaults for the rest."""
    return {name: value for name, value in options.items() if value is not None}


@reports_errors
def submit(
    repo: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. org/model.")],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit to deploy.")] = "main",
    model_name: Annotated[str | None, typer.Option(help="Display name (default: the submission id).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature, 0 to 2.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling, above 0 up to 1.")] = None,
    top_k: Annotated[int | None, typer.Option(help="Top-k sampling, 1 to 1000; -1 disables it.")] = None,
    presence_penalty: Annotated[float | None, typer.Option(help="-2 to 2.")] = None,
    frequency_penalty: Annotated[float | None, typer.Option(help="-2 to 2.")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="Above 0 up to 2; 1 is off.")] = None,
    max_input_tokens: Annotated[
        int | None, typer.Option(help="Prompt budget in tokens, 64 to 32768.")
    ] = None,
    max_output_tokens: Annotated[int | None, typer.Option(help="Reply length limit, 1 to 2048.")] = None,
    best_of: Annotated[int | None, typer.Option(help="Candidate replies per request, 1 to 16.")] = None,
    stop: Annotated[
        list[str] | None,
        typer.Option(help="A stopping word (repeat for several; default: the layout's, e.g. <|im_end|>)."),
    ] = None,
    formatter: Annotated[
        str,
        typer.Option(
            help=f"Prompt layout: {', '.join(FORMATTER_PRESETS)}. auto uses the model's own chat template "
            "(Chai's pygmalion layout when it ships none).",
            case_sensitive=False,
        ),
    ] = "auto",
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the id and return at once.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for deployed or failed.")] = 900,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only JSON (the final submission info).")
    ] = False,
) -> None:
    """Submit a model, then follow it stage by stage until it is deployed (or fails)."""
    preset = FORMATTER_PRESETS.get(formatter.lower())
    if preset is None:
        raise typer.BadParameter(f"choose one of: {', '.join(FORMATTER_PRESETS)}", param_hint="--formatter")
    params = _generation_params(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        repetition_penalty=repetition_penalty,
        max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens,
        best_of=best_of,
        stopping_words=stop or list(preset.stopping_words) or None,
    )
    body: dict[str, Any] = {"model_repo": repo, "hf_revision": revision, "generation_params": params}
    if preset.layout is not None:
        body["formatter"] = preset.layout
    if model_name:
        body["model_name"] = model_name
    out = stdout()
    with open_client() as client:
        submission_id = client.submit(body)
        if no_wait:
            if as_json:
                print_json({"submission_id": submission_id})
            else:
                out.print(f"submitted {shown(repo)}@{shown(revision)} as [bold]{shown(submission_id)}[/]")
                out.print(f"follow it with: guanaco status {shown(submission_id)}")
            return
        if not as_json:
            out.print(f"submitted {shown(repo)}@{shown(revision)} as [bold]{shown(submission_id)}[/]")
            out.print("waiting for the pipeline (Ctrl-C stops waiting, not the submission)…")
        info = _follow(client, submission_id, timeout, out if not as_json else None)
    if as_json:
        print_json(info.model_dump(mode="json"))
    else:
        out.print(_waterfall(info))
        _print_outcome(out, info)
    if info.status != Status.DEPLOYED:
        raise typer.Exit(1)


def _follow(
    client: GuanacoClient, submission_id: str, timeout_s: float, out: Console | None
) -> SubmissionInfo:
    """Poll the submission until it settles, showing live per-stage progress when `out` is given."""
    from guanaco_dagster.cli.client import GuanacoAPIError

    started = time.monotonic()
    deadline = started + timeout_s
    progress = StageProgress(out) if out is not None else None
    try:
        if progress is not None:
            progress.__enter__()
        while True:
            try:
                info = client.get_submission(submission_id)
            except GuanacoAPIError as error:
                # The service may answer before its transaction commits: an id it just gave out can be
                # unknown for a moment.
                if error.status == 404 and time.monotonic() < started + NEW_SUBMISSION_GRACE_S:
                    time.sleep(POLL_INTERVAL_S)
                    continue
                raise
            if progress is not None:
                progress.update(info.status, stage_rows(info))
            if info.status in SETTLED_STATUSES:
                return info
            if time.monotonic() > deadline:
                fail(
                    f"{submission_id} is still '{info.status}' after {timeout_s:.0f} s; "
                    f"it goes on without us: `guanaco status {submission_id}`"
                )
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        fail(f"stopped waiting; {submission_id} goes on: `guanaco status {submission_id}`", code=130)
    finally:
        if progress is not None:
            progress.__exit__(None, None, None)


def _print_outcome(out: Console, info: SubmissionInfo) -> None:
    sid = shown(info.submission_id)
    if info.status == Status.DEPLOYED:
        took = f" in {info.time_to_deployed_s:.1f} s" if info.time_to_deployed_s is not None else ""
        out.print(f"[bold green]deployed[/]{took}: chat with it with `guanaco chat {sid}`")
    elif info.status == Status.FAILED:
        stderr().print(
            f"[bold red]failed:[/] {shown(info.failure_reason or 'no reason recorded', multiline=True)}"
        )
    else:
        out.print(f"{sid} is {styled_status(info.status)}")


@reports_errors
def list_submissions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {submission_id: status}.")] = False,
) -> None:
    """Your submissions and their status, oldest first."""
    with open_client() as client:
        submissions = client.list_submissions()
    if as_json:
        print_json(submissions)
        return
    out = stdout()
    if not submissions:
        out.print("no submissions yet: `guanaco submit ORG/MODEL`")
        return
    table = Table(title="Your submissions")
    table.add_column("submission id", no_wrap=True)
    table.add_column("status")
    for submission_id, status in submissions.items():
        table.add_row(shown(submission_id), styled_status(status))
    out.print(table)


@reports_errors
def status(
    submission_id: Annotated[str, typer.Argument(help="The id `guanaco submit` printed.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full submission info as JSON.")] = False,
) -> None:
    """A submission's status, failure reason, stage timings and time to deployed."""
    with open_client() as client:
        info = client.get_submission(submission_id)
    if as_json:
        print_json(info.model_dump(mode="json"))
        return
    out = stdout()
    details = Table(title=shown(info.submission_id), show_header=False)
    details.add_column("field", style="bold")
    details.add_column("value")
    details.add_row("status", styled_status(info.status))
    if info.failure_reason:
        details.add_row("failure reason", f"[red]{shown(info.failure_reason, multiline=True)}[/]")
    revision = info.hf_revision + (f" ({info.resolved_revision})" if info.resolved_revision else "")
    details.add_row("model", f"{shown(info.model_repo)}@{shown(revision)}")
    details.add_row("model name", shown(info.model_name))
    details.add_row("submitted", timestamp(info.timestamp))
    if info.time_to_deployed_s is not None:
        details.add_row("time to deployed", f"{info.time_to_deployed_s:.1f} s (target 300 s)")
    if info.status == Status.DEPLOYED:
        details.add_row(
            "OpenAI API", f"base URL {shown(client.openai_base_url)}, model {shown(info.submission_id)}"
        )
    out.print(details)
    if info.stages:
        out.print(_waterfall(info))


@reports_errors
def logs(
    submission_id: Annotated[str, typer.Argument(help="The submission whose log to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the log entries as JSON.")] = False,
    server: Annotated[
        bool, typer.Option("--server", help="Show the end of the model server's own log instead.")
    ] = False,
) -> None:
    """A submission's log: one timestamped line per status change (`--server`: the model server's log)."""
    if server:
        with open_client() as client:
            text = client.server_log(submission_id)
        stdout().print(clean_text(text, multiline=True), markup=False, highlight=False)
        return
    with open_client() as client:
        info = client.get_submission(submission_id)
    if as_json:
        print_json([entry.model_dump(mode="json") for entry in info.logs])
        return
    out = stdout()
    for entry in info.logs:
        style = "red" if entry.level == "ERROR" else "dim"
        text = shown(entry.entry, multiline=True)
        out.print(f"[{style}]{timestamp(entry.timestamp)}  {entry.level:<5}[/]  {text}")


# --- lifecycle actions: the service records the request, Dagster carries it out ------------------------


def _print_lifecycle(response: LifecycleResponse) -> None:
    sid = shown(response.submission_id)
    stdout().print(
        f"requested {response.action} of [bold]{sid}[/] (request #{response.request_id}); it is "
        f"{styled_status(response.status)} until Dagster carries it out: `guanaco status {sid}`"
    )


@reports_errors
def deactivate(submission_id: Annotated[str, typer.Argument(help="A deployed submission of yours.")]) -> None:
    """Take a deployed model out of beta routing and stop its server; its feedback stays."""
    with open_client() as client:
        _print_lifecycle(client.deactivate(submission_id))


@reports_errors
def teardown(
    submission_id: Annotated[str, typer.Argument(help="A deployed, inactive or failed submission.")],
) -> None:
    """Stop a model's server for good (status `torndown`)."""
    with open_client() as client:
        _print_lifecycle(client.teardown(submission_id))


@reports_errors
def redeploy(
    submission_id: Annotated[str, typer.Argument(help="An inactive, torn-down or failed submission.")],
) -> None:
    """Run a submission through the pipeline again."""
    with open_client() as client:
        _print_lifecycle(client.redeploy(submission_id))
