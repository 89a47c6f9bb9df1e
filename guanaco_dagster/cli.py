"""`guanaco`: submit a model from the Hugging Face Hub with one command, chat with it, read its feedback.

Every developer command talks HTTP to the Guanaco service (`guanaco serve`); only `serve` and `admin` touch
the platform directly. Heavy imports (uvicorn, the store) happen inside the commands that need them.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from guanaco_dagster.client import (
    KEY_ENV,
    GuanacoAPIError,
    GuanacoClient,
    ServiceUnreachable,
    clear_credentials,
    credentials_path,
    resolve_credentials,
    save_credentials,
)
from guanaco_dagster.console import StageProgress, summary_table, waterfall_table
from guanaco_dagster.domain.submissions import StageRow
from guanaco_dagster.personas import DEFAULT_PERSONA, Persona, find_persona, persona_names
from guanaco_dagster.service.schemas import (
    ChatMessageIn,
    ChatRequest,
    ConversationFeedback,
    FeedbackResponse,
    LifecycleResponse,
    SubmissionInfo,
)

app = typer.Typer(
    name="guanaco",
    help="Submit a fine-tuned chat model from the Hugging Face Hub; get real user feedback within minutes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
admin_app = typer.Typer(help="Operator commands that act on the store directly.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")

# Statuses after which a submission stops moving by itself.
SETTLED_STATUSES = ("deployed", "failed", "inactive", "torndown")
STATUS_STYLES = {"deployed": "green", "failed": "red", "inactive": "dim", "torndown": "dim"}
POLL_INTERVAL_S = 0.75
NEW_SUBMISSION_GRACE_S = 5.0
SAMPLE_CONVERSATIONS = 3

# Prompt layouts a developer can pick with `--formatter`; the service validates them like any other.
FORMATTERS: dict[str, dict[str, str]] = {
    "pygmalion": {},  # the service's default (Chai's)
    "vicuna": {
        "memory_template": "SYSTEM: You are {bot_name}. {memory}\n",
        "prompt_template": "{prompt}\n",
        "bot_template": "ASSISTANT: {message}\n",
        "user_template": "USER: {message}\n",
        "response_template": "ASSISTANT:",
    },
    "chatml": {
        "memory_template": "<|im_start|>system\nYou are {bot_name}. {memory}<|im_end|>\n",
        "prompt_template": "<|im_start|>system\n{prompt}<|im_end|>\n",
        "bot_template": "<|im_start|>assistant\n{message}<|im_end|>\n",
        "user_template": "<|im_start|>user\n{message}<|im_end|>\n",
        "response_template": "<|im_start|>assistant\n",
    },
}

P = ParamSpec("P")
R = TypeVar("R")


def _stdout() -> Console:
    # Made per use, not at import: rich reads the terminal width (COLUMNS) when a console is created.
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(message: str, code: int = 1) -> NoReturn:
    """Tell the user what went wrong (in red, on stderr) and exit."""
    _stderr().print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _describe(error: GuanacoAPIError) -> str:
    """What the user should know, and do, about an error answer."""
    if error.status == 401:
        if resolve_credentials().key is None:
            return f"no developer key: run `guanaco login` (or set {KEY_ENV})"
        return "your key was refused: run `guanaco login`"
    if error.status == 404:
        return f"not found: {error.message}"
    if error.status == 422:
        return "the service rejected the request:\n  " + "\n  ".join(error.field_errors or [error.message])
    if error.status == 409:
        return error.message
    return f"the service answered {error.status}: {error.message}"


def _reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures (service down, refused key, unknown id, invalid input) into one red line."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ServiceUnreachable as error:
            _fail(str(error))
        except GuanacoAPIError as error:
            _fail(_describe(error))

    return run


def _client() -> GuanacoClient:
    credentials = resolve_credentials()
    return GuanacoClient(credentials.url, credentials.key)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _styled_status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'yellow')}]{escape(status)}[/]"


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stage_rows(info: SubmissionInfo) -> list[StageRow]:
    """The submission's stages as waterfall rows, offsets in seconds since it was submitted."""
    submitted_at = _as_utc(info.timestamp)
    return [
        StageRow(
            stage=stage.stage,
            start_offset_s=round((_as_utc(stage.started_at) - submitted_at).total_seconds(), 3),
            duration_s=stage.duration_s,
            succeeded=stage.succeeded,
        )
        for stage in sorted(info.stages, key=lambda s: s.started_at)
    ]


def _waterfall(info: SubmissionInfo) -> Table:
    extra = [("deployed", info.time_to_deployed_s)] if info.time_to_deployed_s is not None else []
    return waterfall_table(stage_rows(info), extra=extra)


# --- credentials --------------------------------------------------------------------------------------


@app.command()
@_reports_errors
def login(
    key: Annotated[str | None, typer.Option(help="Your developer key (asked for when not given).")] = None,
    url: Annotated[str | None, typer.Option(help="The Guanaco service, e.g. http://127.0.0.1:8080.")] = None,
) -> None:
    """Check a developer key against the service and save it for the other commands."""
    service_url = resolve_credentials(url=url).url
    key = (key or typer.prompt("Developer key", hide_input=True)).strip()
    with GuanacoClient(service_url, key) as client:
        try:
            submissions = client.list_submissions()
        except GuanacoAPIError as error:
            if error.status == 401:
                _fail(f"your key was refused by {service_url}: check it, or ask an operator for a new one")
            raise
    path = save_credentials(service_url, key)
    _stdout().print(
        f"[green]logged in[/] to {escape(service_url)} ({len(submissions)} submissions); "
        f"key saved in {escape(str(path))}"
    )


@app.command()
def logout() -> None:
    """Forget the saved developer key."""
    path = credentials_path()
    if clear_credentials():
        _stdout().print(f"logged out: removed {escape(str(path))}")
    else:
        _stdout().print("not logged in: nothing to remove")


# --- submissions --------------------------------------------------------------------------------------


def _generation_params(**options: Any) -> dict[str, Any]:
    """Only the parameters the user set: the service fills in its defaults for the rest."""
    return {name: value for name, value in options.items() if value is not None}


@app.command()
@_reports_errors
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
        list[str] | None, typer.Option(help="A stopping word (repeat for several; default: newline).")
    ] = None,
    formatter: Annotated[
        str, typer.Option(help=f"Prompt layout: {', '.join(FORMATTERS)}.", case_sensitive=False)
    ] = "pygmalion",
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the id and return at once.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for deployed or failed.")] = 900,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only JSON (the final submission info).")
    ] = False,
) -> None:
    """Submit a model, then follow it stage by stage until it is deployed (or fails)."""
    layout = FORMATTERS.get(formatter.lower())
    if layout is None:
        raise typer.BadParameter(f"choose one of: {', '.join(FORMATTERS)}", param_hint="--formatter")
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
        stopping_words=stop or None,
    )
    body: dict[str, Any] = {"model_repo": repo, "hf_revision": revision, "generation_params": params}
    if layout:
        body["formatter"] = layout
    if model_name:
        body["model_name"] = model_name
    out = _stdout()
    with _client() as client:
        submission_id = client.submit(body)
        if no_wait:
            if as_json:
                _print_json({"submission_id": submission_id})
            else:
                out.print(f"submitted {escape(repo)}@{escape(revision)} as [bold]{escape(submission_id)}[/]")
                out.print(f"follow it with: guanaco status {escape(submission_id)}")
            return
        if not as_json:
            out.print(f"submitted {escape(repo)}@{escape(revision)} as [bold]{escape(submission_id)}[/]")
            out.print("waiting for the pipeline (Ctrl-C stops waiting, not the submission)…")
        info = _follow(client, submission_id, timeout, out if not as_json else None)
    if as_json:
        _print_json(info.model_dump(mode="json"))
    else:
        out.print(_waterfall(info))
        _print_outcome(out, info)
    if info.status != "deployed":
        raise typer.Exit(1)


def _follow(
    client: GuanacoClient, submission_id: str, timeout_s: float, out: Console | None
) -> SubmissionInfo:
    """Poll the submission until it settles, showing live per-stage progress when `out` is given."""
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
                _fail(
                    f"{submission_id} is still '{info.status}' after {timeout_s:.0f} s; "
                    f"it goes on without us: `guanaco status {submission_id}`"
                )
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        _fail(f"stopped waiting; {submission_id} goes on: `guanaco status {submission_id}`", code=130)
    finally:
        if progress is not None:
            progress.__exit__(None, None, None)


def _print_outcome(out: Console, info: SubmissionInfo) -> None:
    sid = escape(info.submission_id)
    if info.status == "deployed":
        took = f" in {info.time_to_deployed_s:.1f} s" if info.time_to_deployed_s is not None else ""
        out.print(f"[bold green]deployed[/]{took}: chat with it with `guanaco chat {sid}`")
    elif info.status == "failed":
        _stderr().print(f"[bold red]failed:[/] {escape(info.failure_reason or 'no reason recorded')}")
    else:
        out.print(f"{sid} is {_styled_status(info.status)}")


@app.command("list")
@_reports_errors
def list_submissions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {submission_id: status}.")] = False,
) -> None:
    """Your submissions and their status, oldest first."""
    with _client() as client:
        submissions = client.list_submissions()
    if as_json:
        _print_json(submissions)
        return
    out = _stdout()
    if not submissions:
        out.print("no submissions yet: `guanaco submit ORG/MODEL`")
        return
    table = Table(title="Your submissions")
    table.add_column("submission id", no_wrap=True)
    table.add_column("status")
    for submission_id, status in submissions.items():
        table.add_row(escape(submission_id), _styled_status(status))
    out.print(table)


@app.command()
@_reports_errors
def status(
    submission_id: Annotated[str, typer.Argument(help="The id `guanaco submit` printed.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full submission info as JSON.")] = False,
) -> None:
    """A submission's status, failure reason, stage timings and time to deployed."""
    with _client() as client:
        info = client.get_submission(submission_id)
    if as_json:
        _print_json(info.model_dump(mode="json"))
        return
    out = _stdout()
    details = Table(title=escape(info.submission_id), show_header=False)
    details.add_column("field", style="bold")
    details.add_column("value")
    details.add_row("status", _styled_status(info.status))
    if info.failure_reason:
        details.add_row("failure reason", f"[red]{escape(info.failure_reason)}[/]")
    revision = info.hf_revision + (f" ({info.resolved_revision})" if info.resolved_revision else "")
    details.add_row("model", f"{escape(info.model_repo)}@{escape(revision)}")
    details.add_row("model name", escape(info.model_name))
    details.add_row("submitted", _timestamp(info.timestamp))
    if info.time_to_deployed_s is not None:
        details.add_row("time to deployed", f"{info.time_to_deployed_s:.1f} s (target 300 s)")
    out.print(details)
    if info.stages:
        out.print(_waterfall(info))


def _timestamp(moment: datetime) -> str:
    return _as_utc(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command()
@_reports_errors
def logs(
    submission_id: Annotated[str, typer.Argument(help="The submission whose log to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the log entries as JSON.")] = False,
) -> None:
    """A submission's log: one timestamped line per status change."""
    with _client() as client:
        info = client.get_submission(submission_id)
    if as_json:
        _print_json([entry.model_dump(mode="json") for entry in info.logs])
        return
    out = _stdout()
    for entry in info.logs:
        style = "red" if entry.level == "ERROR" else "dim"
        out.print(f"[{style}]{_timestamp(entry.timestamp)}  {entry.level:<5}[/]  {escape(entry.entry)}")


# --- chat ---------------------------------------------------------------------------------------------


def _persona(name: str | None) -> Persona:
    if name is None:
        return DEFAULT_PERSONA
    try:
        return find_persona(name)
    except KeyError:
        raise typer.BadParameter(f"choose one of: {', '.join(persona_names())}", param_hint="--bot") from None


@app.command()
@_reports_errors
def chat(
    submission_id: Annotated[str, typer.Argument(help="A deployed submission of yours.")],
    bot: Annotated[str | None, typer.Option(help=f"Bundled persona: {', '.join(persona_names())}.")] = None,
    user_name: Annotated[str, typer.Option(help="Your name in the conversation.")] = "User",
    show_input: Annotated[
        bool, typer.Option("--show-input", help="Print the prompt the model gets.")
    ] = False,
) -> None:
    """Chat with your deployed model as one of the bundled bots; type `exit` (or Ctrl-D) to stop."""
    persona = _persona(bot)
    out = _stdout()
    with _client() as client:
        info = client.get_submission(submission_id)
        if info.status != "deployed":
            _fail(f"{submission_id} is '{info.status}', not deployed: chat works once it is deployed")
        out.print(
            f"chatting with [bold]{escape(info.model_name)}[/] as {escape(persona.name)} — `exit` to stop"
        )
        history = [ChatMessageIn(sender="bot", message=persona.first_message)]
        out.print(f"[bold cyan]{escape(persona.name)}:[/] {escape(persona.first_message)}", soft_wrap=True)
        while True:
            try:
                line = out.input(f"[bold]{escape(user_name)}:[/] ").strip()
            except (EOFError, KeyboardInterrupt):
                out.print()
                break
            if line.lower() in ("exit", "quit"):
                break
            if not line:
                continue
            history.append(ChatMessageIn(sender="user", message=line))
            request = ChatRequest(
                memory=persona.memory,
                prompt=persona.prompt_for(user_name),
                chat_history=history[-200:],
                bot_name=persona.name,
                user_name=user_name,
            )
            try:
                with out.status("thinking…"):
                    response = client.chat(submission_id, request)
            except GuanacoAPIError as error:
                if error.status < 500:
                    raise
                history.pop()  # the model was unavailable: let the user send it again
                _stderr().print(f"[red]no reply ({escape(error.message)}); try again[/]")
                continue
            if show_input:
                out.print(f"[dim]--- model input ---\n{escape(response.model_input)}\n---[/]", soft_wrap=True)
            out.print(
                f"[bold cyan]{escape(persona.name)}:[/] {escape(response.model_output)}", soft_wrap=True
            )
            history.append(ChatMessageIn(sender="bot", message=response.model_output))


# --- feedback and leaderboard -------------------------------------------------------------------------


def conversation_text(conversation: ConversationFeedback) -> str:
    """A conversation as "sender: message" lines, deleted messages left out."""
    return "\n".join(f"{m.sender.name}: {m.content}" for m in conversation.messages if not m.deleted)


def _thumb(thumbs_up: bool) -> str:
    return "👍" if thumbs_up else "👎"


@app.command()
@_reports_errors
def feedback(
    submission_id: Annotated[str, typer.Argument(help="The submission whose feedback to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON (Chai's shape).")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print one CSV row per conversation.")] = False,
) -> None:
    """What beta users said about your model: summary statistics and sample conversations (anonymised)."""
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--csv")
    with _client() as client:
        response = client.feedback(submission_id)
    if as_json:
        _print_json(response.model_dump(mode="json"))
    elif as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["conversation", "thumbs_up", "text", "conversation_text"])
        for key, conversation in response.feedback.items():
            writer.writerow([key, conversation.thumbs_up, conversation.text, conversation_text(conversation)])
    else:
        _print_feedback(_stdout(), submission_id, response)


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


@app.command()
@_reports_errors
def leaderboard(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON keyed by submission id.")] = False,
) -> None:
    """Every model that served users, ranked on feedback, engagement, repetition and latency."""
    with _client() as client:
        entries = client.leaderboard()
    ordered = sorted(
        entries.items(), key=lambda item: (item[1].overall_rank is None, item[1].overall_rank or 0)
    )
    if as_json:
        _print_json({sid: entry.to_dict() for sid, entry in ordered})
        return
    out = _stdout()
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
            _styled_status(entry.status),
            f"{entry.thumbs_up} / {entry.thumbs_down}",
            ratio,
            _number(entry.wilson_lower_bound),
            _number(entry.mean_conversation_length, "{:.1f}"),
            _number(entry.repetition_score),
            _number(entry.latency_p95_s, "{:.2f} s"),
        )
    out.print(table)


# --- lifecycle ----------------------------------------------------------------------------------------


def _print_lifecycle(response: LifecycleResponse) -> None:
    sid = escape(response.submission_id)
    _stdout().print(
        f"requested {response.action} of [bold]{sid}[/] (request #{response.request_id}); it is "
        f"{_styled_status(response.status)} until Dagster carries it out: `guanaco status {sid}`"
    )


@app.command()
@_reports_errors
def deactivate(submission_id: Annotated[str, typer.Argument(help="A deployed submission of yours.")]) -> None:
    """Take a deployed model out of beta routing and stop its server; its feedback stays."""
    with _client() as client:
        _print_lifecycle(client.deactivate(submission_id))


@app.command()
@_reports_errors
def teardown(
    submission_id: Annotated[str, typer.Argument(help="A deployed, inactive or failed submission.")],
) -> None:
    """Stop a model's server for good (status `torndown`)."""
    with _client() as client:
        _print_lifecycle(client.teardown(submission_id))


@app.command()
@_reports_errors
def redeploy(
    submission_id: Annotated[str, typer.Argument(help="An inactive, torn-down or failed submission.")],
) -> None:
    """Run a submission through the pipeline again."""
    with _client() as client:
        _print_lifecycle(client.redeploy(submission_id))


# --- running the platform -----------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default: GUANACO_SERVICE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: GUANACO_SERVICE_PORT).")] = None,
) -> None:
    """Run the Guanaco HTTP service (configured from GUANACO_* environment variables)."""
    import uvicorn
    from sqlalchemy.engine import make_url

    from guanaco_dagster.settings import load_settings

    settings = load_settings()
    host, port = host or settings.service_host, port or settings.service_port
    store_url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    _stdout().print(f"Guanaco service on http://{host}:{port} (docs at /docs); store: {escape(store_url)}")
    uvicorn.run("guanaco_dagster.service.app:create_app", factory=True, host=host, port=port)


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Dagit (dagster-webserver) port.")] = 3000,
    service_port: Annotated[int, typer.Option(help="Guanaco service port.")] = 8080,
) -> None:
    """Run the whole platform here (S3 cache, Dagster daemon and Dagit, the service) until Ctrl-C."""
    import time

    from guanaco_dagster.embedded.platform import EmbeddedPlatform
    from guanaco_dagster.settings import load_settings

    settings = load_settings()
    console = _stdout()
    platform = EmbeddedPlatform(settings, webserver_port=port, service_port=service_port)
    with console.status("starting the S3 cache, Dagster and the Guanaco service…"):
        platform.__enter__()  # also turns SIGTERM into a clean exit
    try:
        token_path = platform.beta_token_path
        console.print(
            f"[green]Guanaco is up[/]  service: {platform.service_url}  Dagit: {platform.webserver_url}\n"
            f"home: {escape(str(settings.home))}  beta service token: {escape(str(token_path))}\n"
            "Create a key with `guanaco admin create-key NAME`, then `guanaco login`. "
            "Ctrl-C stops everything."
        )
        while True:
            platform.check_health()
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("stopping inference servers, Dagster, the service and S3…"):
            platform.__exit__(None, None, None)


@admin_app.command("create-key")
def create_key(name: Annotated[str, typer.Argument(help="The developer's unique name.")]) -> None:
    """Create a developer and print their key; the key is shown only this once."""
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from guanaco_dagster.domain.developers import create_developer
    from guanaco_dagster.settings import load_settings
    from guanaco_dagster.store.database import Store
    from guanaco_dagster.store.models import Developer

    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise typer.BadParameter("a developer name has 1 to 100 characters", param_hint="NAME")
    store = Store(load_settings().resolved_database_url).migrate()
    try:
        with store.session() as session:
            if session.scalar(select(Developer).where(Developer.name == name)) is not None:
                _fail(f"a developer named '{name}' already exists; choose another name")
            _developer, key = create_developer(session, name)
    except IntegrityError:  # created by someone else between the check and the insert
        _fail(f"a developer named '{name}' already exists; choose another name")
    _stderr().print(
        f"[yellow]key for '{escape(name)}' below: Guanaco stores only its hash, so copy it now. "
        "Use it with `guanaco login`.[/]"
    )
    typer.echo(key)


if __name__ == "__main__":
    app()
