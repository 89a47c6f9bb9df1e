"""Operator routes: Prometheus `/metrics` for the service, and `/metrics/targets` listing the model servers'.

Neither needs a key, as Prometheus scrapes them: keep `/metrics*` off the public Ingress (docs/kubernetes.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from guanaco_dagster.beta.server_metrics import deployed_scrape_targets
from guanaco_dagster.service.dependencies import SessionDep, get_store
from guanaco_dagster.service.schemas import ScrapeTargetGroup
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Submission
from guanaco_dagster.submissions.lifecycle import Status

router = APIRouter(tags=["operations"])


class ModelsByStatus:
    """A collector that counts submissions per lifecycle status when Prometheus scrapes (one GROUP BY)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        with self.store.session() as session:
            counts = dict(
                session.execute(select(Submission.status, func.count()).group_by(Submission.status)).all()
            )
        gauge = GaugeMetricFamily("guanaco_models", "Submissions per lifecycle status.", labels=["status"])
        for status in Status:
            gauge.add_metric([str(status)], counts.get(status, 0))
        yield gauge


class _Exposition:
    """The process's default registry (counters of every module) followed by per-app collectors."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors: Iterable[Any] = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


@router.get("/metrics", include_in_schema=False)
def metrics(store: Annotated[Store, Depends(get_store)]) -> Response:
    """Prometheus text exposition: requests and latency per route, routing, feedback, models by status."""
    body = generate_latest(_Exposition(REGISTRY, ModelsByStatus(store)))  # type: ignore[arg-type]
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/metrics/targets",
    response_model=list[ScrapeTargetGroup],
    summary="Deployed model servers' own metrics, as Prometheus HTTP service discovery targets",
)
def metrics_targets(session: SessionDep) -> list[dict[str, object]]:
    """Point a Prometheus `http_sd_configs` at this URL to scrape every deployed vLLM server's `/metrics`."""
    return [target.as_http_sd() for target in deployed_scrape_targets(session)]
