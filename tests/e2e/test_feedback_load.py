"""Feedback at scale through the real Dagster daemon: steady feedback on 20 deployed models never floods the
run queue, and every summary (in the store and in the Dagster UI's feedback_summary partitions) converges to
its model's final feedback count."""

from __future__ import annotations

import random
import threading
import time

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, RunsFilter
from rich.console import Console
from rich.table import Table

from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.embedded.platform import EmbeddedPlatform
from guanaco_dagster.feedback.feedback_report import submissions_with_new_feedback
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import FeedbackSummaryRow
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import (
    SubmissionRequest,
    create_submission,
    get_submission,
)
from sensors.feedback_sensor import IN_FLIGHT
from tests.fixtures.platform import embedded_settings
from tests.fixtures.store import walk_to

pytestmark = [pytest.mark.e2e]

MODELS = 20
FEEDBACK_FOR_S = 60.0
FEEDBACK_EVERY_S = 0.2
CONVERGE_WITHIN_S = 90.0


def deployed_models(store: Store, count: int) -> list[str]:
    """`count` submissions marked deployed directly in the store (no pipeline, no server)."""
    ids = []
    with store.session() as session:
        developer = get_or_create_developer(session, "load")
        for index in range(count):
            submission = create_submission(session, developer, SubmissionRequest(model_repo=f"load/m{index}"))
            walk_to(session, submission.id, Status.DEPLOYED)
            get_submission(session, submission.id).endpoint_url = "http://127.0.0.1:9/v1"
            ids.append(submission.id)
    return ids


def post_feedback(store: Store, submission_id: str, index: int) -> None:
    with store.session() as session:
        conversation = start_conversation(session, user_id=f"user-{index}", submission_id=submission_id)
        leave_feedback(session, conversation.id, thumbs_up=index % 3 != 0, text="fun and quick")


def runs_in_flight(instance: DagsterInstance) -> int:
    return instance.get_runs_count(RunsFilter(statuses=IN_FLIGHT))


def summarised_counts(store: Store) -> dict[str, int]:
    with store.session() as session:
        return {row.submission_id: row.feedback_count for row in session.query(FeedbackSummaryRow)}


def test_steady_feedback_keeps_the_run_queue_bounded_and_every_summary_converges(
    hub_server, s3_server, tmp_path, capsys
):
    settings = embedded_settings(tmp_path / "home", hub_server, s3_server)
    store = Store(settings.resolved_database_url).migrate()
    ids = deployed_models(store, MODELS)
    posted = dict.fromkeys(ids, 0)
    depths: list[int] = []
    sampling = threading.Event()

    with EmbeddedPlatform(settings, restore_models=False) as platform:
        instance = DagsterInstance.from_config(str(platform.dagster_home))

        def sample_queue_depth() -> None:
            while not sampling.wait(0.5):
                depths.append(runs_in_flight(instance))

        sampler = threading.Thread(target=sample_queue_depth, daemon=True)
        sampler.start()
        try:
            rng, index, started = random.Random(14), 0, time.monotonic()
            while time.monotonic() - started < FEEDBACK_FOR_S:
                submission_id = rng.choice(ids)
                post_feedback(store, submission_id, index)
                posted[submission_id] += 1
                index += 1
                time.sleep(FEEDBACK_EVERY_S)
            feedback_stopped = time.monotonic()
            while time.monotonic() - feedback_stopped < CONVERGE_WITHIN_S:
                with store.session() as session:
                    stale = submissions_with_new_feedback(session)
                if not stale and runs_in_flight(instance) == 0:
                    break
                time.sleep(1)
            converged_after_s = time.monotonic() - feedback_stopped
        finally:
            sampling.set()
            sampler.join()
        batch_runs = instance.get_runs(RunsFilter(job_name="summarise_feedback_batch"))
        ui_counts = {
            submission_id: records.records[0].asset_materialization.metadata["feedback_count"].value
            for submission_id in ids
            if (
                records := instance.fetch_materializations(
                    AssetRecordsFilter(
                        asset_key=AssetKey("feedback_summary"), asset_partitions=[submission_id]
                    ),
                    limit=1,
                )
            ).records
        }
        other_runs = instance.get_runs_count(RunsFilter()) - len(batch_runs)
        instance.dispose()

    expected = {sid: count for sid, count in posted.items() if count}
    assert summarised_counts(store) == expected, "summaries did not converge to the final feedback counts"
    assert ui_counts == expected, "the Dagster UI's feedback_summary partitions lag the store"
    # One batch at a time, whatever the feedback rate: the queue never grew.
    assert max(depths) <= 1, depths
    assert other_runs == 0
    changes = sum(posted.values())
    # A run per (submission, count) change would have been `changes` runs.
    assert len(batch_runs) < changes / 4
    with capsys.disabled():
        table = Table(title="Feedback load through the real daemon")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for name, value in [
            ("models", MODELS),
            ("feedback posted", changes),
            ("feedback window", f"{FEEDBACK_FOR_S:.0f} s"),
            ("summary runs (batches)", len(batch_runs)),
            ("largest batch", max(int(r.tags.get("guanaco/feedback-batch-size", 0)) for r in batch_runs)),
            ("max runs queued + running", max(depths)),
            ("converged after feedback stopped", f"{converged_after_s:.1f} s"),
        ]:
            table.add_row(name, str(value))
        Console().print(table)
