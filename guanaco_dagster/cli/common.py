"""What every client command shares: consoles, the one-red-line error report, JSON output, status styles.

The HTTP client (httpx, pydantic, the service's schemas) is imported only when a command opens it, so
`guanaco --help` stays as light as typer and rich.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from guanaco_dagster.cli.credentials import KEY_ENV, resolve_credentials
from guanaco_dagster.feedback.text_hygiene import clean_text
from guanaco_dagster.submissions.lifecycle import TERMINAL, Status

if TYPE_CHECKING:
    from guanaco_dagster.cli.client import GuanacoAPIError, GuanacoClient

# Statuses after which a submission stops moving by itself.
SETTLED_STATUSES: frozenset[Status] = frozenset({Status.DEPLOYED, *TERMINAL})
STATUS_STYLES: dict[str, str] = {
    Status.DEPLOYED: "green",
    Status.FAILED: "red",
    Status.INACTIVE: "dim",
    Status.TORNDOWN: "dim",
}
IN_PROGRESS_STYLE = "yellow"

P = ParamSpec("P")
R = TypeVar("R")


def stdout() -> Console:
    """A console on stdout for what the user asked to see."""
    # Made per use, not at import: rich reads the terminal width (COLUMNS) when a console is created.
    return Console(highlight=False)


def stderr() -> Console:
    """A console on stderr for warnings and errors."""
    return Console(stderr=True, highlight=False)


def shown(text: str, *, multiline: bool = False) -> str:
    """Text from the service or another person, ready for rich markup: terminal escapes and control
    characters removed (newlines and tabs kept when `multiline`), markup brackets escaped."""
    return escape(clean_text(text, multiline=multiline))


def fail(message: str, code: int = 1) -> NoReturn:
    """Tell the user what went wrong (in red, on stderr) and exit."""
    stderr().print(f"[bold red]error:[/] {shown(message, multiline=True)}")
    raise typer.Exit(code)


def describe(error: GuanacoAPIError) -> str:
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


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures (service down, refused key, unknown id, invalid input) into one red line."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        from guanaco_dagster.cli.client import GuanacoAPIError, ServiceUnreachable

        try:
            return command(*args, **kwargs)
        except ServiceUnreachable as error:
            fail(str(error))
        except GuanacoAPIError as error:
            fail(describe(error))

    return run


def open_client(needs_key: bool = True) -> GuanacoClient:
    """A client for the saved (or configured) service URL and developer key.

    Without a key, commands that need one stop here with what to do, rather than failing at the service
    (which may not even be the one the user means: nobody told the CLI where it is).
    """
    from guanaco_dagster.cli.client import GuanacoClient

    credentials = resolve_credentials()
    if needs_key and credentials.key is None:
        fail(f"not logged in: run `guanaco login` (or set {KEY_ENV})")
    return GuanacoClient(credentials.url, credentials.key)


def installed_version() -> str:
    """The installed version of the thin client (`guanaco-client`) or of the platform (`guanaco`)."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("guanaco-client", "guanaco"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "unknown (not installed: running from a checkout)"


def print_json(data: Any) -> None:
    """Print `data` as indented JSON, for scripts."""
    typer.echo(json.dumps(data, indent=2, default=str))


def styled_status(status: str) -> str:
    """A status in its colour: green when deployed, red when failed, dim when retired, yellow on the way."""
    return f"[{STATUS_STYLES.get(status, IN_PROGRESS_STYLE)}]{shown(status)}[/]"


def as_utc(moment: datetime) -> datetime:
    """The moment with UTC attached when it came without a timezone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def timestamp(moment: datetime) -> str:
    """A moment as `YYYY-MM-DD HH:MM:SS UTC`."""
    return as_utc(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
