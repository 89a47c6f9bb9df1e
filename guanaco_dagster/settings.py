"""Platform configuration: environment variables with a `GUANACO_` prefix (pydantic-settings).

Each group of fields is declared once, beside the code that reads it (`HubConfig`, `IntakeLimits`,
`S3Config`, `StressConfig`, `Slo`, `LocalServerConfig`, `ArenaConfig`, `FeedbackCategoryConfig`);
`Settings` inherits them all so every process
(service, CLI, `guanaco up`, the code location) reads the same variables, and the Dagster resources inherit
the same groups (resources/), so the Dagster UI shows them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from guanaco_dagster.arena.config import ArenaConfig
from guanaco_dagster.config import secret_field
from guanaco_dagster.deployment.local_config import LocalServerConfig
from guanaco_dagster.feedback.category_config import FeedbackCategoryConfig
from guanaco_dagster.stages.hub_download import HubConfig
from guanaco_dagster.stages.s3_client import S3Config
from guanaco_dagster.stages.stress import Slo, StressConfig
from guanaco_dagster.stages.weight_checks import IntakeLimits


class Settings(
    HubConfig,
    S3Config,
    IntakeLimits,
    StressConfig,
    Slo,
    LocalServerConfig,
    ArenaConfig,
    FeedbackCategoryConfig,
    BaseSettings,
):
    """Everything an operator can configure; defaults run the embedded platform on one machine."""

    model_config = SettingsConfigDict(env_prefix="GUANACO_", extra="ignore")

    home: Path = Field(
        default=Path.home() / ".guanaco" / "platform", description="Working folder of the platform."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the Guanaco store; SQLite under `home` when unset."
    )

    # Inference servers and how Dagster runs steps (see docs/kubernetes.md).
    deployer: Literal["local", "kubernetes"] = "local"
    executor: Literal["in_process", "k8s"] = "in_process"
    # The Dagster webserver's GraphQL endpoint: the service launches a submission's run and a feedback
    # summary through it at once, not a sensor tick later (the sensors stay the safety net). Unset: sensors.
    dagster_graphql_url: str | None = None

    # Beta routing: how much feedback a model should collect before it stops being favoured.
    feedback_target: int = 100
    # The leaderboard: models with less feedback than this are listed as provisional, below rated ones.
    leaderboard_min_feedback: int = Field(default=5, ge=1)

    # The HTTP service (`guanaco serve`).
    service_host: str = "127.0.0.1"
    service_port: int = 8080
    # The app's bot-response service authenticates beta routes with this token; unset = beta routes off.
    beta_service_token: SecretStr | None = None
    # The beta web page (/beta/app) for testers holding an operator's invite (`guanaco admin invite`).
    beta_page_enabled: bool = False
    max_request_bytes: int = 1024 * 1024
    # `json`: one JSON line per request (method, route, status, duration, request id) on stderr.
    log_format: Literal["text", "json"] = "text"
    # The service migrates the store when it starts; on Kubernetes a migration Job does it once instead.
    migrate_on_start: bool = True
    # Keys user pseudonyms (feedback/pseudonym_key.py); unset = a random key created under `home`.
    pseudonym_key: str | None = secret_field(
        description="Secret behind user pseudonyms (a long random string)."
    )

    @cached_property
    def resolved_database_url(self) -> str:
        """The store URL, defaulting to a SQLite file under `home`."""
        return self.database_url or f"sqlite:///{self.home / 'guanaco.db'}"

    @property
    def work_dir(self) -> Path:
        """Where downloads and artifacts are staged before they reach the S3 cache."""
        return self.home / "work"

    @property
    def servers_dir(self) -> Path:
        """Where local deployers record the inference servers they started."""
        return self.home / "servers"


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as `GUANACO_*` environment variables, so child processes see the same configuration."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"GUANACO_{name.upper()}"] = str(value)
    return env


def load_settings() -> Settings:
    """Read the settings from the environment now (not cached: tests and launchers change it)."""
    return Settings()
