"""`python -m guanaco_dagster.cli`: the same as the `guanaco` command."""

from guanaco_dagster.cli.app import app

app(prog_name="guanaco")
