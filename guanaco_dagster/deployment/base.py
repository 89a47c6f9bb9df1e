"""What every deployer of inference servers promises, whatever runs the servers (local processes, pods)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DeploymentSpec:
    """Serve the artifact at `artifact_uri` for one submission under `served_model_name`.

    `max_model_len` is the context length to serve (the smaller of the model's own limit and the
    platform's); None leaves the deployer's configured length.
    """

    submission_id: str
    artifact_uri: str
    served_model_name: str
    max_model_len: int | None = None


@dataclass(frozen=True)
class Deployment:
    """A running, healthy inference server: an OpenAI-compatible API at `endpoint_url` (ends in /v1)."""

    submission_id: str
    endpoint_url: str
    startup_s: float
    details: dict[str, Any] = field(default_factory=dict)


class DeploymentError(Exception):
    """A server could not be deployed; the message says why and ends with the server's last log lines.

    `cause` is the short, cause-first sentence a developer reads (no host paths, at most a few hundred
    characters); `log_tail` the end of the server's log, for the owner and the Dagster UI.
    """

    def __init__(self, message: str, *, cause: str = "", log_tail: str = "") -> None:
        super().__init__(message)
        self.cause = cause
        self.log_tail = log_tail


class Deployer(ABC):
    """Starts, finds and stops one inference server per submission."""

    @abstractmethod
    def deploy(self, spec: DeploymentSpec) -> Deployment:
        """Start a server for `spec` and wait until it is healthy; return the running one if already up.

        On failure, stop everything this call started and raise DeploymentError.
        """

    @abstractmethod
    def teardown(self, submission_id: str) -> bool:
        """Stop the submission's server and forget it; False when there was nothing to stop. Idempotent."""

    @abstractmethod
    def get(self, submission_id: str) -> Deployment | None:
        """The submission's deployment if its server is running and healthy, else None."""

    @abstractmethod
    def list_submission_ids(self) -> list[str]:
        """Submissions this deployer has a server recorded for (running or not), sorted."""

    def prestart(self, submission_id: str) -> bool:
        """Start the submission's server before its artifact exists, so `deploy` waits less; False when
        nothing was started (this deployer cannot, or a server already runs). `teardown` stops it."""
        return False

    def last_log_lines(self, submission_id: str) -> str:
        """The end of the submission's server log, to tell why it died ('' when this deployer keeps none)."""
        return ""

    def teardown_all(self) -> int:
        """Stop every recorded server; return how many were stopped."""
        return sum(1 for submission_id in self.list_submission_ids() if self.teardown(submission_id))
