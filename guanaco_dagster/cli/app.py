"""`guanaco`: submit a model from the Hugging Face Hub with one command, chat with it, read its feedback.

This module only builds the typer app and registers the commands; each command group lives in its own
module. Every developer command talks HTTP to the Guanaco service (`guanaco serve`); only the operator
commands (`serve`, `up`, `admin`) touch the platform, and they import it inside their bodies, so
`guanaco --help` loads typer and rich and little else.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Annotated

import typer

from guanaco_dagster.cli import auth, chat, feedback, operator, submissions
from guanaco_dagster.cli.common import installed_version

# The thin client (`pip install guanaco-client`) ships the CLI without the platform: no operator commands.
PLATFORM_INSTALLED = find_spec("guanaco_dagster.embedded") is not None

app = typer.Typer(
    name="guanaco",
    help="Submit a fine-tuned chat model from the Hugging Face Hub; get real user feedback within minutes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"guanaco {installed_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Submit a fine-tuned chat model from the Hugging Face Hub; get real user feedback within minutes."""


# In the order `guanaco --help` lists them: credentials, submissions, chat, feedback, lifecycle, operator.
app.command()(auth.login)
app.command()(auth.logout)
app.command()(auth.whoami)
app.command()(submissions.submit)
app.command("list")(submissions.list_submissions)
app.command()(submissions.status)
app.command()(submissions.logs)
app.command()(chat.chat)
app.command()(feedback.feedback)
app.command()(feedback.leaderboard)
app.command()(submissions.deactivate)
app.command()(submissions.teardown)
app.command()(submissions.redeploy)
if PLATFORM_INSTALLED:
    admin_app = typer.Typer(help="Operator commands that act on the store directly.", no_args_is_help=True)
    app.add_typer(admin_app, name="admin")
    app.command()(operator.serve)
    app.command()(operator.up)
    admin_app.command("create-key")(operator.create_key)
    admin_app.command()(operator.invite)
    admin_app.command("invites")(operator.list_invites)
    admin_app.command("revoke-invite")(operator.revoke_invite)
    admin_app.command("flagged-voters")(operator.flagged_voters)
