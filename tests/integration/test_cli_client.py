"""The thin client's surface: the SDK's DataFrames, `--version`, `whoami`, shell completion, the OpenAI base
URL in `status`, the public leaderboard, and "not logged in" before login. Against the live service."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from guanaco_dagster.cli.client import GuanacoClient
from tests.integration import test_cli

# The CLI tests' fixtures: a fresh data folder, alice's key, deployed and rated submissions.
data_dir = test_cli.data_dir
as_alice = test_cli.as_alice
deployed = test_cli.deployed
rated_submission = test_cli.rated_submission
guanaco = test_cli.guanaco


def test_commands_before_login_say_so_instead_of_blaming_the_service(data_dir):
    result = guanaco("status", "whatever_v1")

    assert result.exit_code == 1
    assert "not logged in: run `guanaco login`" in result.output
    assert "cannot reach" not in result.output


def test_version_prints_the_installed_version():
    result = guanaco("--version")

    assert result.exit_code == 0
    assert result.output.startswith("guanaco ") and len(result.output.split()) >= 2


def test_whoami_names_the_developer_and_the_service(service, as_alice):
    result = guanaco("whoami")

    assert result.exit_code == 0, result.output
    assert "alice" in result.output and service.url in result.output


def test_shell_completion_script_is_offered():
    completed = subprocess.run(
        [sys.executable, "-m", "guanaco_dagster.cli", "--show-completion"],
        capture_output=True,
        text=True,
        env={**os.environ, "SHELL": "/bin/bash"},
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "_guanaco_completion" in completed.stdout


def test_status_of_a_deployed_model_shows_its_openai_base_url(service, as_alice, deployed):
    submission_id = deployed()

    result = guanaco("status", submission_id)

    assert result.exit_code == 0, result.output
    assert f"base URL {service.url}/v1, model {submission_id}" in result.output


def test_the_leaderboard_needs_no_login_and_shows_intervals(service, data_dir, rated_submission):
    result = guanaco("leaderboard")

    assert result.exit_code == 0, result.output
    # Two thumbs (1 up) are below the minimum of 5: provisional, marked with '*', ratio with its interval.
    assert "0.50 (0.09–0.91)" in result.output
    assert "* provisional" in result.output


def test_the_sdk_returns_feedback_as_a_frame_with_chaiverses_columns(service, rated_submission):
    with GuanacoClient(service.url, service.alice_key) as client:
        frame = client.feedback_frame(rated_submission)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:8]) == [
        "conversation_id",
        "bot_id",
        "user_id",
        "conversation",
        "thumbs_up",
        "feedback",
        "model_name",
        "public",
    ]
    assert frame["thumbs_up"].tolist() == [True, False]
    assert (frame["bot_id"] == "_bot_quill").all() and frame["message_count"].tolist() == [2, 2]


def test_the_sdk_returns_every_message_as_a_frame(service, rated_submission):
    with GuanacoClient(service.url, service.alice_key) as client:
        messages = client.conversations_frame(rated_submission)
    assert len(messages) == 4
    assert messages["from_bot"].tolist() == [False, True, False, True]
    assert messages.loc[messages.from_bot, "content"].tolist() == ["Noted!", "No."]


def test_the_sdk_leaderboard_frame_is_in_rank_order_without_a_key(service, rated_submission):
    with GuanacoClient(service.url) as client:
        board = client.leaderboard_frame()
    assert rated_submission in board["submission_id"].tolist()
    assert board["overall_rank"].tolist() == sorted(board["overall_rank"].tolist())
    rated_rows = board[~board.provisional]
    if len(rated_rows):  # every rated model comes before every provisional one
        assert rated_rows["overall_rank"].max() < board[board.provisional]["overall_rank"].min()
