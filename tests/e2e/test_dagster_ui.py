"""What an operator reads in the Dagster UI, checked in headless Chromium: with one model deployed and one
submission failed at download, the SLO check's page says the check passed (the failed submission never
reached the stress test), and the failed partition's page gives the reason the developer got.

Screenshots land in the test's tmp folder, or in `GUANACO_UI_SCREENSHOTS` when that is set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from assets.latency_report import SLO_CHECK
from guanaco_dagster.embedded.platform import EmbeddedPlatform
from guanaco_dagster.ports import free_port
from guanaco_dagster.store.database import Store
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission, get_submission
from guanaco_dagster.testing.watch import wait_for_outcome
from tests.fixtures.browser import chromium_context
from tests.fixtures.platform import embedded_settings

pytestmark = [pytest.mark.e2e, pytest.mark.vllm]

MISSING_REPO = "guanaco-tests/no-such-model"
UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
PAGE_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class TwoSubmissions:
    """The platform's Dagster UI after one submission was deployed and one failed at download."""

    ui_url: str
    deployed_id: str
    failed_id: str
    failure_reason: str


def _wait_until_runs_finish(dagster_home: Path, timeout_s: float) -> None:
    # The stress-test run marks the model deployed before its check result and summary are stored.
    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        deadline = time.monotonic() + timeout_s
        while instance.get_runs_count(RunsFilter(statuses=UNFINISHED)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Dagster runs still unfinished after {timeout_s:.0f} s")
            time.sleep(1)
    finally:
        instance.dispose()


@pytest.fixture(scope="module")
def two_submissions(hub_server, s3_server, tmp_path_factory) -> Iterator[TwoSubmissions]:
    home = tmp_path_factory.mktemp("ui") / "home"
    # A loaded machine can take minutes to start vLLM; the test is about the UI, not the start-up time.
    settings = embedded_settings(home, hub_server, s3_server, server_startup_timeout_s=600.0)
    store = Store(settings.resolved_database_url)
    with EmbeddedPlatform(settings, webserver_port=free_port(), hf_endpoint=hub_server.endpoint) as platform:
        with store.session() as session:
            developer = get_or_create_developer(session, "ui")
            deployed_id = create_submission(
                session, developer, SubmissionRequest(model_repo=hub_server.repo_id)
            ).id
            failed_id = create_submission(session, developer, SubmissionRequest(model_repo=MISSING_REPO)).id
        outcomes = {
            sid: wait_for_outcome(store, sid, timeout_s=600, health_check=platform.check_health)
            for sid in (failed_id, deployed_id)
        }
        with store.session() as session:
            failure_reason = get_submission(session, failed_id).failure_reason
            deployed_failure = get_submission(session, deployed_id).failure_reason
        assert outcomes[deployed_id] == Status.DEPLOYED, deployed_failure
        assert outcomes[failed_id] == Status.FAILED
        _wait_until_runs_finish(platform.dagster_home, timeout_s=180)
        # A fresh instance covers every page with a "Join the Dagster community" dialog until it is seen.
        httpx.post(f"{platform.webserver_url}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30)
        yield TwoSubmissions(platform.webserver_url, deployed_id, failed_id, failure_reason or "")


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with chromium_context(profile, {"width": 1600, "height": 1000}) as context:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        yield page


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("GUANACO_UI_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_the_slo_checks_page_reads_passed_when_every_deployed_model_met_the_slo(
    browser_page, two_submissions, screenshots
):
    page = browser_page
    page.goto(f"{two_submissions.ui_url}/assets/latency_report?view=checks&checkDetail={SLO_CHECK}")
    page.get_by_text("Evaluation result").wait_for()
    page.get_by_text("Passed", exact=True).first.wait_for()
    page.screenshot(path=str(screenshots / "slo-check.png"), full_page=True)

    text = page.inner_text("body")
    assert "Execution failed" not in text
    assert "partitions failed" not in text
    assert "Succeeded" in text  # the check's status line in the list of checks
    assert "latency_p95_s" in text  # the latest execution's numbers, which the plots are drawn from


def test_a_failed_partitions_page_shows_the_reason_the_developer_got(
    browser_page, two_submissions, screenshots
):
    page = browser_page
    failed_id = two_submissions.failed_id
    page.goto(f"{two_submissions.ui_url}/assets/raw_weights?view=partitions&partition={quote(failed_id)}")
    page.get_by_text("failed, and did not materialize this asset").wait_for()
    page.get_by_role("button", name="View all historical events (1)").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(failed_id, exact=True).click()  # the event's row opens its description and metadata
    reason = dialog.get_by_text(f"Failed: {two_submissions.failure_reason}")
    reason.wait_for()
    page.screenshot(path=str(screenshots / "failed-partition.png"), full_page=True)

    assert "not found on the Hub" in two_submissions.failure_reason
    assert reason.is_visible()


def test_the_assets_events_tab_shows_the_failure_with_its_reason(browser_page, two_submissions, screenshots):
    page = browser_page
    failed_id = two_submissions.failed_id
    page.goto(f"{two_submissions.ui_url}/assets/raw_weights?view=events&partition={quote(failed_id)}")
    page.get_by_text(two_submissions.failure_reason, exact=True).wait_for()  # the event's `reason` metadata
    page.screenshot(path=str(screenshots / "failed-event.png"), full_page=True)

    text = page.inner_text("body")
    assert f"Partition {failed_id} observed" in text
    assert two_submissions.failure_reason in text
