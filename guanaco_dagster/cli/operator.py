"""Operator commands that run the platform or open the store: `serve`, `up`, `admin create-key` and the
beta page's invites (`admin invite`, `admin invites`, `admin revoke-invite`) and `admin flagged-voters`.

Their heavy imports (uvicorn, SQLAlchemy, the store, the embedded platform with Dagster) stay inside the
function bodies, so the developer commands and `guanaco --help` never pay for them.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape

from guanaco_dagster.cli.common import fail, print_json, shown, stderr, stdout


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
    stdout().print(f"Guanaco service on http://{host}:{port} (docs at /docs); store: {escape(store_url)}")
    uvicorn.run("guanaco_dagster.service.app:create_app", factory=True, host=host, port=port)


def up(
    port: Annotated[int, typer.Option(help="Dagster UI (dagster-webserver) port.")] = 3000,
    service_port: Annotated[int, typer.Option(help="Guanaco service port.")] = 8080,
    rotate_beta_token: Annotated[
        bool,
        typer.Option(
            "--rotate-beta-token",
            help="Replace the saved beta service token with a new one (give it to the app).",
        ),
    ] = False,
) -> None:
    """Run the whole platform here (S3 cache, Dagster daemon and UI, the service) until Ctrl-C."""
    from guanaco_dagster.embedded.platform import EmbeddedPlatform
    from guanaco_dagster.settings import load_settings

    settings = load_settings()
    console = stdout()
    platform = EmbeddedPlatform(
        settings, webserver_port=port, service_port=service_port, rotate_beta_token=rotate_beta_token
    )
    with console.status("starting the S3 cache, Dagster and the Guanaco service…"):
        platform.__enter__()  # also turns SIGTERM into a clean exit
    try:
        token_path = platform.beta_token_path
        console.print(
            f"[green]Guanaco is up[/]  service: {platform.service_url}  Dagster UI: "
            f"{platform.webserver_url}\n"
            f"home: {escape(str(settings.home))}  beta service token: {escape(str(token_path))}\n"
            "Create a key with `guanaco admin create-key NAME`, then `guanaco login`. "
            "Ctrl-C stops everything."
        )
        if settings.beta_page_enabled:
            console.print(
                f"beta page: {platform.service_url}/beta/app (invite testers with "
                f"`guanaco admin invite --name NAME --url {platform.service_url}`)"
            )
        while True:
            platform.check_health()
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("stopping inference servers, Dagster, the service and S3…"):
            platform.__exit__(None, None, None)


def create_key(name: Annotated[str, typer.Argument(help="The developer's unique name.")]) -> None:
    """Create a developer and print their key; the key is shown only this once."""
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from guanaco_dagster.settings import load_settings
    from guanaco_dagster.store.database import Store
    from guanaco_dagster.store.models import Developer
    from guanaco_dagster.submissions.developers import create_developer

    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise typer.BadParameter("a developer name has 1 to 100 characters", param_hint="NAME")
    store = Store(load_settings().resolved_database_url).migrate()
    try:
        with store.session() as session:
            if session.scalar(select(Developer).where(Developer.name == name)) is not None:
                fail(f"a developer named '{name}' already exists; choose another name")
            _developer, key = create_developer(session, name)
    except IntegrityError:  # created by someone else between the check and the insert
        fail(f"a developer named '{name}' already exists; choose another name")
    stderr().print(
        f"[yellow]key for '{escape(name)}' below: Guanaco stores only its hash, so copy it now. "
        "Use it with `guanaco login`.[/]"
    )
    typer.echo(key)


def invite(
    name: Annotated[str, typer.Option("--name", help="Who the invite is for (only operators see it).")],
    expires: Annotated[
        str, typer.Option(help="When it stops working: a duration (90m, 12h, 7d, 2w) or an ISO date (UTC).")
    ] = "7d",
    url: Annotated[
        str | None,
        typer.Option(help="The service's address as testers reach it (default: GUANACO_SERVICE_HOST:PORT)."),
    ] = None,
) -> None:
    """Invite a tester to the beta web page: prints their link (shown only this once)."""
    from guanaco_dagster.beta.invites import create_invite, invite_url, parse_expiry
    from guanaco_dagster.settings import load_settings
    from guanaco_dagster.store.database import Store

    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise typer.BadParameter("an invite's name has 1 to 100 characters", param_hint="--name")
    try:
        expires_at = parse_expiry(expires)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--expires") from None
    settings = load_settings()
    with Store(settings.resolved_database_url).migrate().session() as session:
        created, token = create_invite(session, name, expires_at)
        invite_id = created.id
    link = invite_url(url or f"http://{settings.service_host}:{settings.service_port}", token)
    warnings = stderr()
    if not settings.beta_page_enabled:
        warnings.print(
            "[yellow]the beta page is off: start the service with GUANACO_BETA_PAGE_ENABLED=true "
            "or this link shows an error page[/]"
        )
    warnings.print(
        f"[yellow]invite {invite_id} for '{shown(name)}', valid until "
        f"{expires_at:%Y-%m-%d %H:%M} UTC. Guanaco stores only its hash, so copy the link now; "
        f"`guanaco admin revoke-invite {invite_id}` stops it.[/]"
    )
    typer.echo(link)


def list_invites() -> None:
    """List the beta page's invites: who, until when, consented, revoked."""
    from rich.table import Table

    from guanaco_dagster.beta.invites import list_invites
    from guanaco_dagster.settings import load_settings
    from guanaco_dagster.store.database import Store
    from guanaco_dagster.store.models import utcnow

    now = utcnow()
    # A tester chats as `web-<id>` (what operators see in votes and anomaly reports).
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("expires (UTC)", no_wrap=True)
    table.add_column("consented")
    table.add_column("state")
    with Store(load_settings().resolved_database_url).migrate().session() as session:
        for row in list_invites(session):
            state = "revoked" if row.revoked_at else "expired" if row.expires_at <= now else "live"
            table.add_row(
                row.id,
                shown(row.name),
                f"{row.expires_at:%Y-%m-%d %H:%M}",
                "yes" if row.consented_at else "no",
                state,
            )
    stdout().print(table)


def revoke_invite(
    invite_id: Annotated[str, typer.Argument(help="The invite's id (`guanaco admin invites`).")],
) -> None:
    """Stop a beta page invite working at once."""
    from guanaco_dagster.beta.invites import InviteNotFound, revoke_invite
    from guanaco_dagster.settings import load_settings
    from guanaco_dagster.store.database import Store

    try:
        with Store(load_settings().resolved_database_url).migrate().session() as session:
            revoked = revoke_invite(session, invite_id)
            name = revoked.name
    except InviteNotFound as error:
        fail(str(error))
    stdout().print(f"invite {invite_id} for '{shown(name)}' revoked: its link stops working now")


def flagged_voters(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: user → score and votes.")] = False,
) -> None:
    """Beta users whose battle votes disagree with everyone else's far beyond chance: their votes are left
    out of the ratings."""
    from rich.table import Table

    from guanaco_dagster.arena.counted_votes import flagged_voters as find_flagged_voters
    from guanaco_dagster.settings import load_settings
    from guanaco_dagster.store.database import Store

    settings = load_settings()
    with Store(settings.resolved_database_url).migrate().session() as session:
        flagged = find_flagged_voters(session, settings)
    if as_json:
        print_json(
            {user: {"score": score, "votes_left_out": votes} for user, (score, votes) in flagged.items()}
        )
        return
    if not flagged:
        stdout().print("no voter is flagged: every counted battle vote is in the ratings")
        return
    table = Table(
        title="Flagged voters", caption="score: disagreement with the consensus, in standard deviations"
    )
    table.add_column("user", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("votes left out", justify="right")
    for user, (score, votes) in flagged.items():
        table.add_row(shown(user), f"{score:.1f}", str(votes))
    stdout().print(table)
