"""End to end over HTTP, as a developer using Chai's client would see it: the embedded platform (Dagster
daemon, S3, service) on PostgreSQL takes a submission to `deployed`, a beta user chats and leaves
feedback, the developer reads it, and deactivation goes through Dagster."""

from __future__ import annotations

import time

import httpx
import pytest

from guanaco_dagster.embedded.platform import EmbeddedPlatform
from guanaco_dagster.ports import free_port
from guanaco_dagster.store.database import Store
from guanaco_dagster.submissions.developers import create_developer
from guanaco_dagster.submissions.lifecycle import HAPPY_PATH
from guanaco_dagster.testing.scratch_postgres import temporary_postgres_database
from tests.fixtures.chai_client import ChaiClientReplay
from tests.fixtures.platform import embedded_settings

pytestmark = [pytest.mark.e2e, pytest.mark.vllm, pytest.mark.postgres]


def _poll(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


def test_chai_clients_calls_work_unchanged_from_submission_to_deactivation(hub_server, s3_server, tmp_path):
    with temporary_postgres_database("guanaco_e2e") as database_url:
        settings = embedded_settings(tmp_path / "home", hub_server, s3_server, database_url=database_url)
        key = _developer_key(database_url)
        with EmbeddedPlatform(
            settings, service_port=free_port(), hf_endpoint=hub_server.endpoint
        ) as platform:
            chai = ChaiClientReplay(platform.service_url, key)
            submission_id = chai.submit(
                {
                    "model_repo": hub_server.repo_id,
                    "generation_params": {
                        "temperature": 0.9,
                        "top_p": 0.95,
                        "top_k": 40,
                        "repetition_penalty": 1.1,
                    },
                    "formatter": {
                        "memory_template": "### Instruction:\n{memory}\n",
                        "prompt_template": "### Input:\n{prompt}\n",
                        "bot_template": "{bot_name}: {message}\n",
                        "user_template": "{user_name}: {message}\n",
                        "response_template": "### Response:\n{bot_name}:",
                    },
                    "model_name": "my-awesome-llama",
                }
            )
            assert chai.wait_for_model_submission(submission_id, timeout_s=600) == "deployed"
            info = chai.get_model_info(submission_id)
            assert [entry["entry"].split(":")[0] for entry in info["logs"]] == [str(s) for s in HAPPY_PATH]
            assert info["time_to_deployed_s"] > 0

            reply = chai.chat(submission_id, "Nova", "A pirate.", "On deck.", "Ahoy!", "Hello there")
            assert reply["model_input"].startswith("### Instruction:\nA pirate.\n### Input:\nOn deck.\n")
            assert reply["model_input"].endswith("You: Hello there\n### Response:\nNova:")

            beta = httpx.Client(
                base_url=platform.service_url,
                headers={"Authorization": f"Bearer {platform.beta_token}"},
                timeout=60,
            )
            conversation = beta.post(
                "/beta/conversations", json={"user_id": "app-user-9", "bot_id": "nova"}
            ).json()
            assert conversation["submission_id"] == submission_id
            cid = conversation["conversation_id"]
            beta.post(f"/beta/conversations/{cid}/messages", json={"message": "Hi! mail me: me@example.com"})
            beta.post(
                f"/beta/conversations/{cid}/feedback", json={"thumbs_up": True, "text": "Fun and creative"}
            )

            raw = _poll(
                # The pipeline leaves an empty summary at deploy time; wait for the one covering the feedback.
                lambda: (
                    (r := chai.get_feedback_rows(submission_id)[0])["summary"]
                    and r["summary"].get("feedback_count")
                    and r
                ),
                timeout_s=120,
                what="feedback summary",
            )
            assert raw["summary"]["feedback_count"] == 1 and raw["thumbs_up"] == 1
            _, rows = chai.get_feedback_rows(submission_id)
            (row,) = rows
            assert row["user_id"].startswith("user-") and "app-user-9" not in row["conversation"]
            assert "[email]" in row["conversation"] and row["model_name"] == "my-awesome-llama"
            assert chai.get_leaderboard()[submission_id]["thumbs_up"] == 1

            chai.deactivate_model(submission_id)
            assert _poll(
                lambda: chai.get_model_info(submission_id)["status"] == "inactive", 120, "deactivation"
            )
            assert platform.deployer().get(submission_id) is None
            # Inactive models keep their feedback and their place on the leaderboard.
            assert chai.get_leaderboard()[submission_id]["status"] == "inactive"


def _developer_key(database_url: str) -> str:
    """A developer created in the store before the platform starts."""
    with Store(database_url).migrate().session() as session:
        _, key = create_developer(session, "chai-user")
    return key
