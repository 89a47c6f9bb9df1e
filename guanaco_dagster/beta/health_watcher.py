"""A background thread of the HTTP service that checks every deployed model server every couple of seconds.

It runs wherever the service runs; on Kubernetes its probe goes through the model's Service, so it sees what
the Deployment's readiness sees. Several service workers each run one: checks are idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx

from guanaco_dagster.beta.health import HealthSettings, ProbeResult, probe, record_probe, watched_models
from guanaco_dagster.store.database import Store

logger = logging.getLogger(__name__)

# Enough to check this many servers at once; a dead one costs at most the probe timeout, not its neighbours.
MAX_PARALLEL_PROBES = 16


class HealthWatcher:
    """Checks every deployed model's `/health` each `check_interval_s` and records the outcome."""

    def __init__(self, store: Store, settings: HealthSettings | None = None) -> None:
        self.store = store
        self.settings = settings or HealthSettings()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guanaco-health-watcher", daemon=True)
        self._http = httpx.Client()
        self._pool = ThreadPoolExecutor(MAX_PARALLEL_PROBES, thread_name_prefix="guanaco-health-probe")

    def check_once(self) -> dict[str, ProbeResult]:
        """One pass over every deployed model; returns submission id → result."""
        with self.store.session() as session:
            models = watched_models(session)
        timeout_s = self.settings.check_timeout_s
        results = list(self._pool.map(lambda m: probe(m.endpoint_url, self._http, timeout_s), models))
        with self.store.session() as session:
            for model, result in zip(models, results, strict=True):
                record_probe(session, model.submission_id, model.endpoint_url, result)
        return {model.submission_id: result for model, result in zip(models, results, strict=True)}

    def start(self) -> HealthWatcher:
        """Start checking in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the pass in progress (at most one probe timeout) and release connections."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.settings.check_timeout_s + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.check_once()
            except Exception:  # a store hiccup must not end the watcher: the next pass retries
                logger.exception("health check pass failed")
            self._stop.wait(max(0.0, self.settings.check_interval_s - (time.monotonic() - started)))


@contextmanager
def watching_health(store: Store, settings: HealthSettings | None = None) -> Iterator[HealthWatcher | None]:
    """Run a HealthWatcher for the duration of the block (none when the interval is 0)."""
    settings = settings or HealthSettings()
    if settings.check_interval_s <= 0:
        yield None
        return
    watcher = HealthWatcher(store, settings).start()
    try:
        yield watcher
    finally:
        watcher.stop()
