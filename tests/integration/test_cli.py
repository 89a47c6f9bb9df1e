"""The `guanaco` CLI through typer's runner, against the live service on PostgreSQL."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.cli import app
from guanaco_dagster.deployment.local_process import process_tree
from guanaco_dagster.feedback.feedback_report import build_feedback_report, save_feedback_report
from guanaco_dagster.ports import free_port, port_open, wait_until
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Message, Submission
from guanaco_dagster.submissions.developers import developer_for_key
from guanaco_dagster.submissions.lifecycle import PIPELINE_STAGES, Status
from guanaco_dagster.submissions.submissions import (
    finish_stage,
    get_submission,
    mark_failed,
    start_stage,
    transition,
)
from tests.fixtures.pipeline import materialize_feedback_summary

# A server that is never called: feedback and leaderboard tests only need a submission marked deployed.
UNUSED_ENDPOINT = "http://127.0.0.1:9/v1"


def guanaco(*args: str, input: str | None = None) -> Result:
    """Run `guanaco ARGS` as a user would, capturing what they see."""
    return CliRunner().invoke(app, list(args), input=input)


def unique_repo(prefix: str = "cli") -> str:
    return f"org/{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def data_dir(service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh `~/.guanaco` and the test service's URL; no key until a test logs in or sets one."""
    folder = tmp_path / "guanaco-data"
    monkeypatch.setenv("GUANACO_DATA_DIR", str(folder))
    monkeypatch.setenv("GUANACO_SERVICE_URL", service.url)
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that rich never wraps an id
    monkeypatch.delenv("GUANACO_KEY", raising=False)
    return folder


@pytest.fixture
def as_alice(data_dir: Path, service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUANACO_KEY", service.alice_key)


@pytest.fixture
def deployed(service) -> Iterator[Callable[..., str]]:
    """Make deployed submissions; retired (inactive) afterwards so beta routing elsewhere never picks them."""
    created: list[str] = []

    def make(
        developer_key: str | None = None,
        endpoint_url: str = UNUSED_ENDPOINT,
        served_model_name: str = "unused",
    ) -> str:
        key = developer_key or service.alice_key
        submission_id = service.deployed_submission(key, endpoint_url, served_model_name, unique_repo())
        created.append(submission_id)
        return submission_id

    yield make
    with service.store.session() as session:
        for submission_id in created:
            if get_submission(session, submission_id).status == Status.DEPLOYED:
                transition(session, submission_id, Status.INACTIVE, message="test over")


def submit_pending(service, developer_key: str | None = None) -> str:
    response = service.client(developer_key or service.alice_key).post(
        "/models/submit", json={"model_repo": unique_repo()}
    )
    response.raise_for_status()
    submission_id = response.json()["submission_id"]
    # The service commits after its response is sent (FastAPI's default dependency scope): wait for the row.
    deadline = time.monotonic() + 10
    while not _stored(service.store, submission_id):
        assert time.monotonic() < deadline, f"{submission_id} was never committed"
        time.sleep(0.02)
    return submission_id


def _stored(store: Store, submission_id: str) -> bool:
    with store.session() as session:
        return session.scalar(select(Submission.id).where(Submission.id == submission_id)) is not None


def fail_in_download(store: Store, submission_id: str, reason: str) -> None:
    """What the pipeline does when the download stage fails."""
    with store.session() as session:
        start_stage(session, submission_id, Status.DOWNLOADING)
    with store.session() as session:
        finish_stage(session, submission_id, Status.DOWNLOADING, succeeded=False)
        mark_failed(session, submission_id, reason)


class PipelineStandIn(threading.Thread):
    """Plays the pipeline for one repo: waits for its submission, then applies `steps` to it."""

    def __init__(self, store: Store, repo: str, steps: Callable[[Store, str], None]) -> None:
        super().__init__(daemon=True)
        self.store, self.repo, self.steps = store, repo, steps
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 30
            while (submission_id := self._submission_id()) is None:
                assert time.monotonic() < deadline, f"{self.repo} was never submitted"
                time.sleep(0.05)
            time.sleep(1.0)  # the CLI is polling by now
            self.steps(self.store, submission_id)
        except BaseException as error:  # surfaced by the test through `self.error`
            self.error = error

    def _submission_id(self) -> str | None:
        with self.store.session() as session:
            return session.scalar(select(Submission.id).where(Submission.model_repo == self.repo))


# --- login / logout -----------------------------------------------------------------------------------


def test_login_saves_the_key_readable_only_by_its_owner(service, data_dir):
    result = guanaco("login", "--key", service.alice_key)

    assert result.exit_code == 0, result.output
    assert f"logged in to {service.url}" in result.output
    path = data_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": service.url, "key": service.alice_key}


def test_login_asks_for_the_key_when_not_given(service, data_dir):
    result = guanaco("login", input=service.alice_key + "\n")

    assert result.exit_code == 0, result.output
    assert service.alice_key not in result.output  # typed hidden
    assert json.loads((data_dir / "credentials.json").read_text())["key"] == service.alice_key


def test_commands_use_the_saved_key(service, data_dir):
    submission_id = submit_pending(service)
    guanaco("login", "--key", service.alice_key)

    result = guanaco("list")

    assert result.exit_code == 0, result.output
    assert submission_id in result.output


def test_login_refuses_a_wrong_key_and_saves_nothing(service, data_dir):
    result = guanaco("login", "--key", "gk-not-a-real-key")

    assert result.exit_code == 1
    assert "your key was refused" in result.output
    assert not (data_dir / "credentials.json").exists()


def test_logout_forgets_the_key(service, data_dir):
    guanaco("login", "--key", service.alice_key)

    assert guanaco("logout").exit_code == 0
    result = guanaco("list")

    assert not (data_dir / "credentials.json").exists()
    assert result.exit_code == 1
    assert "not logged in: run `guanaco login`" in result.output


def test_a_key_the_service_no_longer_accepts_is_reported(service, data_dir, monkeypatch):
    monkeypatch.setenv("GUANACO_KEY", "gk-revoked")

    result = guanaco("list")

    assert result.exit_code == 1
    assert "your key was refused: run `guanaco login`" in result.output
    assert "Traceback" not in result.output


# --- submit -------------------------------------------------------------------------------------------


def test_submit_no_wait_returns_an_id_the_service_knows(service, as_alice):
    repo = unique_repo()

    result = guanaco("submit", repo, "--revision", "v2", "--temperature", "0.7", "--no-wait", "--json")

    assert result.exit_code == 0, result.output
    submission_id = json.loads(result.stdout)["submission_id"]
    info = service.client(service.alice_key).get(f"/models/{submission_id}").json()
    assert (info["model_repo"], info["hf_revision"], info["status"]) == (repo, "v2", "pending")
    assert info["generation_params"]["temperature"] == 0.7


def test_submit_no_wait_prints_the_id_for_people(service, as_alice):
    result = guanaco("submit", "org/Readable-Model", "--no-wait")

    assert result.exit_code == 0, result.output
    submission_id = re.search(r"as (org-readable-model_v\d+)", result.output).group(1)
    assert f"guanaco status {submission_id}" in result.output


def test_submit_sends_the_chosen_formatter_and_stopping_words(service, as_alice):
    result = guanaco(
        "submit", unique_repo(), "--formatter", "chatml", "--stop", "<|im_end|>", "--stop", "\n", "--no-wait",
        "--json",
    )  # fmt: skip

    submission_id = json.loads(result.stdout)["submission_id"]
    info = service.client(service.alice_key).get(f"/models/{submission_id}").json()
    assert info["formatter"]["user_template"] == "<|im_start|>user\n{message}<|im_end|>\n"
    assert info["generation_params"]["stopping_words"] == ["<|im_end|>", "\n"]


def test_submit_shows_one_line_per_invalid_field_and_creates_nothing(service, as_alice):
    before = service.client(service.alice_key).get("/models/").json()

    result = guanaco("submit", unique_repo(), "--temperature", "5", "--top-k", "0", "--no-wait")

    assert result.exit_code == 1
    assert "generation_params.temperature: Input should be less than or equal to 2" in result.output
    assert "generation_params.top_k: top_k must be -1 (disabled) or between 1 and 1000" in result.output
    assert "Traceback" not in result.output
    assert service.client(service.alice_key).get("/models/").json() == before


def test_submit_waits_and_reports_why_the_submission_failed(service, as_alice):
    repo = unique_repo("fails")
    reason = f"revision 'v9' not found in {repo}"
    pipeline = PipelineStandIn(service.store, repo, lambda store, sid: fail_in_download(store, sid, reason))
    pipeline.start()

    result = guanaco("submit", repo, "--revision", "v9", "--timeout", "60")

    pipeline.join(timeout=30)
    assert pipeline.error is None
    assert result.exit_code == 1
    assert f"failed: {reason}" in result.output
    assert "Stage waterfall" in result.output
    assert "downloading" in result.output


def test_submit_waits_until_deployed_and_shows_the_waterfall(service, as_alice):
    repo = unique_repo("deploys")

    def deploy_then_report(store: Store, submission_id: str) -> None:
        for stage in PIPELINE_STAGES:
            with store.session() as session:
                start_stage(session, submission_id, stage)
            with store.session() as session:
                finish_stage(session, submission_id, stage, succeeded=True)
        with store.session() as session:
            transition(session, submission_id, Status.DEPLOYED)

    pipeline = PipelineStandIn(service.store, repo, deploy_then_report)
    pipeline.start()

    try:
        result = guanaco("submit", repo, "--timeout", "60")
    finally:
        pipeline.join(timeout=30)
        with service.store.session() as session:  # out of beta routing for the tests that follow
            submission_id = session.scalar(select(Submission.id).where(Submission.model_repo == repo))
            transition(session, submission_id, Status.INACTIVE, message="test over")

    assert pipeline.error is None
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"deployed in \d+\.\d s: chat with it with `guanaco chat {submission_id}`", result.output
    )
    waterfall = result.output[result.output.index("Stage waterfall") :]
    for stage in PIPELINE_STAGES:
        assert stage.value in waterfall


def test_submit_json_prints_only_the_final_info(service, as_alice):
    repo = unique_repo("json")
    reason = f"revision 'v9' not found in {repo}"
    pipeline = PipelineStandIn(service.store, repo, lambda store, sid: fail_in_download(store, sid, reason))
    pipeline.start()

    result = guanaco("submit", repo, "--json", "--timeout", "60")

    pipeline.join(timeout=30)
    assert pipeline.error is None
    assert result.exit_code == 1
    info = json.loads(result.stdout)
    assert (info["status"], info["failure_reason"]) == ("failed", reason)


def test_submit_gives_up_waiting_after_the_timeout(service, as_alice):
    result = guanaco("submit", unique_repo(), "--timeout", "1")

    assert result.exit_code == 1
    assert re.search(
        r"is still 'pending' after 1 s; it goes on without us: `guanaco status \S+`", result.output
    )


# --- list / status / logs -----------------------------------------------------------------------------


def test_list_shows_only_the_callers_submissions(service, as_alice):
    mine = submit_pending(service, service.alice_key)
    theirs = submit_pending(service, service.bob_key)

    result = guanaco("list")

    assert result.exit_code == 0, result.output
    assert re.search(rf"{mine}\s+│\s+pending", result.output)
    assert theirs not in result.output


def test_list_json_is_the_services_answer(service, as_alice):
    submit_pending(service)

    result = guanaco("list", "--json")

    assert json.loads(result.stdout) == service.client(service.alice_key).get("/models/").json()


def test_status_shows_the_failure_reason_and_stage_timings(service, as_alice):
    submission_id = submit_pending(service)
    fail_in_download(service.store, submission_id, "revision 'v9' not found in org/x")

    result = guanaco("status", submission_id)

    assert result.exit_code == 0, result.output
    assert re.search(r"status\s+│ failed", result.output)
    assert "revision 'v9' not found in org/x" in result.output
    assert re.search(r"downloading\s+│\s+\d+\.\d s\s+│\s+\d+\.\d s", result.output)


def test_status_shows_the_time_to_deployed(service, as_alice, deployed):
    submission_id = deployed()

    result = guanaco("status", submission_id)

    assert re.search(r"time to deployed\s+│ \d+\.\d s \(target 300 s\)", result.output)


def test_status_json_is_the_services_answer(service, as_alice):
    submission_id = submit_pending(service)

    result = guanaco("status", submission_id, "--json")

    assert (
        json.loads(result.stdout) == service.client(service.alice_key).get(f"/models/{submission_id}").json()
    )


def test_logs_prints_one_timestamped_line_per_status_change(service, as_alice):
    submission_id = submit_pending(service)
    fail_in_download(service.store, submission_id, "revision 'v9' not found in org/x")

    result = guanaco("logs", submission_id)

    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    assert re.fullmatch(rf"{stamp}  INFO   pending: submitted", lines[0])
    assert re.fullmatch(rf"{stamp}  INFO   downloading: downloading started", lines[1])
    assert re.fullmatch(rf"{stamp}  ERROR  failed: revision 'v9' not found in org/x", lines[2])


def test_another_developers_submission_is_not_found(service, as_alice):
    theirs = submit_pending(service, service.bob_key)

    for command in ("status", "logs", "feedback", "deactivate"):
        result = guanaco(command, theirs)
        assert result.exit_code == 1, command
        assert f"not found: no submission '{theirs}'" in result.output


# --- chat ---------------------------------------------------------------------------------------------


@pytest.mark.vllm
def test_chat_prints_the_models_reply(service, as_alice, deployed, served_tiny_model):
    submission_id = deployed(
        endpoint_url=served_tiny_model.endpoint_url, served_model_name=served_tiny_model.served_model_name
    )

    result = guanaco("chat", submission_id, "--bot", "vega", "--show-input", input="Hello\nexit\n")

    assert result.exit_code == 0, result.output
    model_input = result.output[result.output.index("--- model input ---") :]
    assert "Vega's Persona: Vega is the navigation AI" in model_input
    assert "User: Hello\nVega:" in model_input
    after_input = model_input[model_input.index("\n---\n") :]
    assert re.search(r"^Vega:", after_input, re.MULTILINE)  # the model's reply, after the prompt it got


@pytest.mark.vllm
def test_chat_sends_the_whole_conversation_each_turn(service, as_alice, deployed, served_tiny_model):
    submission_id = deployed(
        endpoint_url=served_tiny_model.endpoint_url, served_model_name=served_tiny_model.served_model_name
    )

    result = guanaco(
        "chat", submission_id, "--user-name", "Sam", "--show-input", input="Hello\nHow are you?\nexit\n"
    )

    assert result.exit_code == 0, result.output
    first_input, second_input = re.findall(r"--- model input ---\n(.*?)\n---\n", result.output, re.DOTALL)
    first_reply = re.search(r"\n---\nQuill: ?(.*)\n", result.output).group(1)
    assert first_input.endswith("Sam: Hello\nQuill:")
    assert "Sam: Is it always this quiet in here?" in first_input  # the persona's example, in the user's name
    assert second_input.endswith(f"Sam: Hello\nQuill: {first_reply}\nSam: How are you?\nQuill:")


def test_chat_with_a_model_that_is_not_deployed_explains_why(service, as_alice):
    submission_id = submit_pending(service)

    result = guanaco("chat", submission_id, input="Hello\nexit\n")

    assert result.exit_code == 1
    assert f"{submission_id} is 'pending', not deployed" in result.output


def test_chat_with_an_unknown_bot_is_a_usage_error(service, as_alice):
    result = guanaco("chat", "whatever_v1", "--bot", "Nobody")

    assert result.exit_code == 2
    assert "Quill" in result.output


# --- feedback -----------------------------------------------------------------------------------------


@pytest.fixture
def rated_submission(service, deployed) -> str:
    """A deployed submission of alice with two rated conversations (one with an e-mail) and a summary."""
    submission_id = deployed()
    exchanges = [
        (True, "lovely, write me at jane.doe@example.com", "my mail is jane.doe@example.com", "Noted!"),
        (False, "too short", "Tell me a story", "No."),
    ]
    with service.store.session() as session:
        for number, (thumbs_up, text, user_says, bot_says) in enumerate(exchanges):
            conversation = start_conversation(
                session,
                user_id=f"user-{number}",
                bot_id="quill",
                bot_name="Quill",
                submission_id=submission_id,
            )
            session.add(Message(conversation_id=conversation.id, sender="user", content=user_says))
            session.add(Message(conversation_id=conversation.id, sender="bot", content=bot_says))
            session.flush()
            leave_feedback(session, conversation.id, thumbs_up=thumbs_up, text=text)
    with service.store.session() as session:
        save_feedback_report(session, submission_id, build_feedback_report(session, submission_id, b"key"))
    return submission_id


def test_feedback_shows_the_summary_and_masks_email_addresses(service, as_alice, rated_submission):
    result = guanaco("feedback", rated_submission)

    assert result.exit_code == 0, result.output
    assert "2 conversations with feedback — 👍 1 / 👎 1" in result.output
    assert "Feedback summary" in result.output
    assert re.search(r"thumbs-up ratio \(Wilson 95 %\)\s+│\s+0\.50", result.output)
    assert "jane.doe@example.com" not in result.output
    assert "my mail is [email]" in result.output
    assert "“lovely, write me at [email]”" in result.output
    assert "Quill: Noted!" in result.output


HOSTILE_FEEDBACK = "\x1b[2J\x1b[31mgreat bot\x1b[0m, would chat again"


def test_terminal_escapes_in_feedback_reach_neither_the_terminal_nor_the_dagster_ui(
    service, as_alice, deployed, tmp_path
):

    submission_id = deployed()
    with service.store.session() as session:
        conversation = start_conversation(
            session, user_id="user-x", bot_id="quill", bot_name="Qu\x1b[5mill", submission_id=submission_id
        )
        session.add(
            Message(conversation_id=conversation.id, sender="user", content="hi\x1b]0;pwned\x07 there")
        )
        session.add(Message(conversation_id=conversation.id, sender="bot", content="Arr\x1b[2K!"))
        session.flush()
        leave_feedback(session, conversation.id, thumbs_up=True, text=HOSTILE_FEEDBACK)

    result = guanaco("feedback", submission_id)
    summary = materialize_feedback_summary(service.store.url, submission_id, tmp_path)

    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "great bot, would chat again" in result.output
    assert "hi there" in result.output and "Quill: Arr!" in result.output
    (materialization,) = summary.asset_materializations_for_node("feedback_summary")
    shown = "".join(str(value.value) for value in materialization.metadata.values())
    assert "\x1b" not in shown and "\x07" not in shown
    assert "great bot, would chat again" in shown


def test_feedback_json_is_the_services_answer_in_chais_shape(service, as_alice, rated_submission):
    result = guanaco("feedback", rated_submission, "--json")

    shown = json.loads(result.stdout)
    assert shown == service.client(service.alice_key).get(f"/feedback/{rated_submission}").json()
    assert (shown["thumbs_up"], shown["thumbs_down"], shown["summary"]["feedback_count"]) == (1, 1, 2)
    conversation = next(iter(shown["feedback"].values()))
    assert set(conversation) == {"conversation_id", "messages", "thumbs_up", "text", "model_name", "public"}
    assert set(conversation["messages"][0]) == {"content", "sender", "sent_date", "deleted"}


def test_feedback_csv_has_one_row_per_conversation(service, as_alice, rated_submission):
    result = guanaco("feedback", rated_submission, "--csv")

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["thumbs_up"], row["feedback"]) for row in rows] == [
        ("True", "lovely, write me at [email]"),
        ("False", "too short"),
    ]
    assert rows[0]["conversation_id"].startswith("_bot_quill_")
    user = rows[0]["conversation"].split(":")[0]
    assert rows[0]["conversation"] == f"{user}: my mail is [email]\nQuill: Noted!"
    assert user != "user-0"  # pseudonymised


def test_feedback_of_a_model_without_feedback_says_so(service, as_alice, deployed):
    result = guanaco("feedback", deployed())

    assert result.exit_code == 0, result.output
    assert "no feedback yet" in result.output


def test_feedback_json_and_csv_together_is_a_usage_error(service, as_alice):
    assert guanaco("feedback", "whatever_v1", "--json", "--csv").exit_code == 2


# --- leaderboard and lifecycle ------------------------------------------------------------------------


def test_leaderboard_lists_a_deployed_model(service, as_alice, rated_submission):
    result = guanaco("leaderboard")

    assert result.exit_code == 0, result.output
    assert re.search(
        rf"{rated_submission}\s+│\s+{rated_submission}\s+│\s+alice\s+│\s+deployed\s+│\s+1 / 1", result.output
    )


def test_leaderboard_json_is_sorted_by_overall_rank(service, as_alice, rated_submission):
    result = guanaco("leaderboard", "--json")

    board = json.loads(result.stdout)
    assert board == service.client(service.alice_key).get("/leaderboard").json()
    assert board[rated_submission]["total_feedback_count"] == 2
    ranks = [entry["overall_rank"] for entry in board.values() if entry["overall_rank"] is not None]
    assert ranks == sorted(ranks)


def test_deactivate_records_the_request_and_the_model_stays_visible(service, as_alice, deployed):
    submission_id = deployed()

    result = guanaco("deactivate", submission_id)

    assert result.exit_code == 0, result.output
    assert re.search(
        rf"requested deactivate of {submission_id} \(request #\d+\); it is deployed", result.output
    )
    assert service.client(service.alice_key).get(f"/models/{submission_id}").status_code == 200
    assert guanaco("status", submission_id).exit_code == 0


def test_a_second_deactivate_is_refused_with_the_reason(service, as_alice, deployed):
    submission_id = deployed()
    guanaco("deactivate", submission_id)

    result = guanaco("deactivate", submission_id)

    assert result.exit_code == 1
    assert f"{submission_id} already has a lifecycle request in progress" in result.output


def test_redeploy_of_a_pending_submission_explains_what_it_needs(service, as_alice):
    submission_id = submit_pending(service)

    result = guanaco("redeploy", submission_id)

    assert result.exit_code == 1
    assert f"cannot redeploy {submission_id}: it is 'pending'" in result.output


# --- the service and the platform ---------------------------------------------------------------------


def test_an_unreachable_service_gets_a_friendly_message(data_dir, monkeypatch, service):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("GUANACO_SERVICE_URL", url)
    monkeypatch.setenv("GUANACO_KEY", service.alice_key)

    for args in (["list"], ["submit", "org/x", "--no-wait"], ["login", "--key", "k"]):
        result = guanaco(*args)
        assert result.exit_code == 1, args
        assert f"cannot reach the Guanaco service at {url}: start it with `guanaco serve`" in result.output
        assert "Traceback" not in result.output


def test_admin_create_key_prints_a_key_the_store_accepts(tmp_path, monkeypatch):
    monkeypatch.setenv("GUANACO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GUANACO_DATABASE_URL", raising=False)

    result = guanaco("admin", "create-key", "carol")

    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert "copy it now" in result.output
    with Store(f"sqlite:///{tmp_path / 'home' / 'guanaco.db'}").session() as session:
        assert developer_for_key(session, key).name == "carol"


def test_admin_create_key_refuses_a_taken_name(tmp_path, monkeypatch):
    monkeypatch.setenv("GUANACO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GUANACO_DATABASE_URL", raising=False)
    guanaco("admin", "create-key", "carol")

    result = guanaco("admin", "create-key", "carol")

    assert result.exit_code == 1
    assert "a developer named 'carol' already exists" in result.output


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_runs_the_platform_until_stopped_and_leaves_nothing_behind(tmp_path, stop_signal):
    home = tmp_path / "platform"
    service_port, webserver_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANACO_")}
    env["GUANACO_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "guanaco"),
            "up",
            "--port",
            str(webserver_port),
            "--service-port",
            str(service_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:

        def announced() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"guanaco up exited early:\n{''.join(lines)}")
            return any("Guanaco is up" in line for line in lines)

        wait_until(announced, timeout_s=180, what="guanaco up")
        assert port_open("127.0.0.1", webserver_port)
        assert httpx.get(f"http://127.0.0.1:{service_port}/health", timeout=10).json() == {"status": "ok"}
        token = home / "beta-service-token"
        assert token.stat().st_mode & 0o777 == 0o600
        started = process_tree(process.pid)
        assert len(started) > 3  # S3, daemon, webserver, service (and their children)
    finally:
        process.send_signal(stop_signal)
        process.wait(timeout=120)
        reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode in (0, 128 + signal.SIGTERM), output
    # Grandchildren (Dagster's code servers) may take a moment to notice; a leak would stay.
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in started), timeout_s=15)
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]
