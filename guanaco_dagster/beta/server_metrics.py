"""Where each deployed model server's own Prometheus metrics are: vLLM serves `/metrics` at its root."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from guanaco_dagster.store.models import Submission
from guanaco_dagster.submissions.lifecycle import Status

METRICS_PATH = "/metrics"


def server_metrics_url(endpoint_url: str) -> str:
    """The metrics URL of the server behind an OpenAI-compatible endpoint (`…/v1` → `…/metrics`)."""
    root = endpoint_url.rstrip("/").removesuffix("/v1")
    return f"{root}{METRICS_PATH}"


@dataclass(frozen=True)
class ScrapeTarget:
    """One deployed model server as Prometheus' HTTP service discovery lists it."""

    submission_id: str
    model_name: str
    metrics_url: str

    def as_http_sd(self) -> dict[str, object]:
        """The target in Prometheus' `http_sd_configs` format: host:port plus labels."""
        parts = urlsplit(self.metrics_url)
        return {
            "targets": [parts.netloc],
            "labels": {
                "__scheme__": parts.scheme,
                "__metrics_path__": parts.path,
                "submission_id": self.submission_id,
                "model_name": self.model_name,
            },
        }


def deployed_scrape_targets(session: Session) -> list[ScrapeTarget]:
    """Every deployed submission with an endpoint, oldest first, with its server's metrics URL."""
    rows = session.execute(
        select(Submission.id, Submission.model_name, Submission.endpoint_url)
        .where(Submission.status == Status.DEPLOYED, Submission.endpoint_url.is_not(None))
        .order_by(Submission.seq)
    )
    return [ScrapeTarget(sid, name or sid, server_metrics_url(url)) for sid, name, url in rows]
