"""Run the pipeline assets in-process against the session's real servers, and read what they left."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    ExecuteInProcessResult,
    RunsFilter,
    materialize,
)

from assets import PIPELINE_ASSETS
from assets.partitions import submissions_partitions
from guanaco_dagster.definitions import build_resources
from guanaco_dagster.deployment.base import Deployer
from guanaco_dagster.domain.developers import get_or_create_developer
from guanaco_dagster.domain.submissions import SubmissionRequest, create_submission, get_submission
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.database import Store

# ---------------------------------------------------------------------------------------------------------
# The pipeline in-process (also used by test_faults.py and test_security.py)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmissionOutcome:
    status: str
    failure_reason: str | None
    events: list[str]


@dataclass
class InProcessPipeline:
    """The submission pipeline's assets run by `materialize` on an ephemeral instance and a SQLite store."""

    settings: Settings
    store: Store
    instance: DagsterInstance
    resources: dict[str, Any]

    @classmethod
    def create(cls, home: Path, hub_server, s3_server, **overrides: Any) -> InProcessPipeline:
        """Settings like the platform's, pointed at the test Hub and S3 servers (`overrides` win)."""
        options: dict[str, Any] = {
            "home": home,
            "s3_endpoint": s3_server.endpoint_url,
            "s3_bucket": s3_server.bucket,
            "s3_access_key_id": s3_server.access_key,
            "s3_secret_access_key": s3_server.secret_key,
            "hf_endpoint": hub_server.endpoint,
            "hub_retries": 2,
            "stress_requests": 4,
            "stress_concurrency": 2,
            "stress_max_tokens": 8,
            "server_startup_timeout_s": 240.0,
            # Inference servers exit with this pytest process, whatever happens to the test.
            "platform_pid": os.getpid(),
            **overrides,
        }
        settings = Settings(**options)
        store = Store(settings.resolved_database_url).migrate()
        return cls(settings, store, DagsterInstance.ephemeral(), build_resources(settings))

    def submit(self, model_repo: str, revision: str = "main", developer: str = "ada") -> str:
        """A new `pending` submission, as the service would record it; returns its id."""
        with self.store.session() as session:
            owner = get_or_create_developer(session, developer)
            request = SubmissionRequest(model_repo=model_repo, hf_revision=revision)
            return create_submission(session, owner, request).id

    def run(
        self, submission_id: str, selection: Sequence[AssetsDefinition] | None = None
    ) -> ExecuteInProcessResult:
        """Materialize the pipeline (or `selection` of it) for the submission's partition; never raises."""
        known = set(self.instance.get_dynamic_partitions(submissions_partitions.name))
        if submission_id not in known:
            self.instance.add_dynamic_partitions(submissions_partitions.name, [submission_id])
        return materialize(
            PIPELINE_ASSETS,
            selection=list(selection) if selection is not None else None,
            partition_key=submission_id,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
        )

    def outcome(self, submission_id: str) -> SubmissionOutcome:
        with self.store.session() as session:
            submission = get_submission(session, submission_id)
            events = [f"{event.status}: {event.message}" for event in submission.events]
            return SubmissionOutcome(submission.status, submission.failure_reason, events)

    def deployer(self) -> Deployer:
        return self.resources["deployer"].get_deployer()

    def recorded_servers(self) -> list[Path]:
        """Server records the local deployer keeps (one JSON file per running server)."""
        return sorted(self.settings.servers_dir.glob("*.json"))

    def failed_runs(self, submission_id: str) -> list[str]:
        """Ids of the failed runs of the submission's partition, as Dagit lists them."""
        records = self.instance.get_run_records(
            RunsFilter(tags={"dagster/partition": submission_id}, statuses=[DagsterRunStatus.FAILURE])
        )
        return [record.dagster_run.run_id for record in records]

    def step_failures(self, run_id: str) -> dict[str, str]:
        """Step key → the failure message Dagit shows for it."""
        failures = {}
        for record in self.instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
            event = record.dagster_event
            data = event.step_failure_data
            description = data.user_failure_data.description if data.user_failure_data else None
            failures[event.step_key] = description or (data.error.message if data.error else "")
        return failures


def model_object_keys(s3_server) -> set[str]:
    """Every key under models/ in the test bucket."""
    client = s3_server.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket, Prefix="models/")
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def model_variant(tiny_model_dir: Path, tmp_path: Path, name: str) -> Path:
    """A copy of the tiny Llama to break."""
    folder = tmp_path / name
    shutil.copytree(tiny_model_dir, folder)
    return folder


def edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
