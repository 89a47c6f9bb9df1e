"""The `guanaco` command line: client commands for developers, operator commands for the platform."""

from guanaco_dagster.cli.app import app

__all__ = ["app"]
