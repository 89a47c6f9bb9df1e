"""`guanaco login` and `guanaco logout`: check a developer key and save it, or forget it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from guanaco_dagster.cli.common import fail, open_client, print_json, reports_errors, stdout
from guanaco_dagster.cli.credentials import (
    clear_credentials,
    credentials_path,
    resolve_credentials,
    save_credentials,
)


@reports_errors
def login(
    key: Annotated[str | None, typer.Option(help="Your developer key (asked for when not given).")] = None,
    url: Annotated[str | None, typer.Option(help="The Guanaco service, e.g. http://127.0.0.1:8080.")] = None,
) -> None:
    """Check a developer key against the service and save it for the other commands."""
    from guanaco_dagster.cli.client import GuanacoAPIError, GuanacoClient

    service_url = resolve_credentials(url=url).url
    key = (key or typer.prompt("Developer key", hide_input=True)).strip()
    with GuanacoClient(service_url, key) as client:
        try:
            submissions = client.list_submissions()
        except GuanacoAPIError as error:
            if error.status == 401:
                fail(f"your key was refused by {service_url}: check it, or ask an operator for a new one")
            raise
    path = save_credentials(service_url, key)
    stdout().print(
        f"[green]logged in[/] to {escape(service_url)} ({len(submissions)} submissions); "
        f"key saved in {escape(str(path))}"
    )


def logout() -> None:
    """Forget the saved developer key."""
    path = credentials_path()
    if clear_credentials():
        stdout().print(f"logged out: removed {escape(str(path))}")
    else:
        stdout().print("not logged in: nothing to remove")


@reports_errors
def whoami(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: developer, submissions, url.")] = False,
) -> None:
    """Which developer your key belongs to, on which service."""
    with open_client() as client:
        me = client.whoami()
        url = client.base_url
    if as_json:
        print_json({**me.model_dump(mode="json"), "url": url})
        return
    stdout().print(
        f"[bold]{escape(me.developer)}[/] on {escape(url)} ({me.submissions} submissions); "
        f"OpenAI-compatible API: {escape(url)}/v1"
    )
