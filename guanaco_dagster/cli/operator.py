"""Operator commands that run the platform or open the store: `serve`, `up` and `admin create-key`.

Their heavy imports (uvicorn, SQLAlchemy, the store, the embedded platform with Dagster) stay inside the
function bodies, so the developer commands and `guanaco --help` never pay for them.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape

from guanaco_dagster.cli.common import fail, stderr, stdout


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
