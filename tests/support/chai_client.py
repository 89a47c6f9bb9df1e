"""The HTTP calls Chai's public client (chaiverse) makes, with its headers and its parsing of answers.

The package cannot be installed here (only its `chai-guanaco` stub is on the registry), so this replays
its documented behaviour: `SubmitterClient` sends `Authorization: Bearer <key>` and GETs the lifecycle
routes; the feedback client sends a `developer_key` header and splits conversation ids on '_'; the
leaderboard is a dict keyed by submission id filtered on thumbs_up + thumbs_down.
"""

from __future__ import annotations

import time

import httpx

TERMINAL_STATUSES = {"deployed", "failed", "inactive"}


class ChaiClientReplay:
    def __init__(self, base_url: str, developer_key: str) -> None:
        self.base_url, self.developer_key = base_url, developer_key

    def _submitter(self, method: str, endpoint: str, json: dict | None = None) -> dict:
        response = httpx.request(
            method,
            self.base_url + endpoint,
            json=json,
            headers={"Authorization": f"Bearer {self.developer_key}"},
            timeout=20,
        )
        assert response.status_code == 200, response.json()
        return response.json()

    def submit(self, submission_params: dict) -> str:
        return self._submitter("POST", "/models/submit", submission_params)["submission_id"]

    def get_model_info(self, submission_id: str) -> dict:
        return self._submitter("GET", f"/models/{submission_id}")

    def wait_for_model_submission(self, submission_id: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        status = "pending"
        while status not in TERMINAL_STATUSES and time.monotonic() < deadline:
            time.sleep(0.5)
            status = self.get_model_info(submission_id)["status"]
        return status

    def chat(
        self, submission_id: str, bot_label: str, memory: str, prompt: str, first: str, text: str
    ) -> dict:
        payload = {
            "memory": memory,
            "prompt": prompt,
            "chat_history": [{"sender": bot_label, "message": first}, {"sender": "user", "message": text}],
            "bot_name": bot_label,
            "user_name": "You",
        }
        return self._submitter("POST", f"/models/{submission_id}/chat", payload)

    def get_feedback_rows(self, submission_id: str) -> tuple[dict, list[dict]]:
        response = httpx.get(
            f"{self.base_url}/feedback/{submission_id}",
            headers={"developer_key": self.developer_key},
            timeout=20,
        )
        assert response.status_code == 200, response.json()
        raw = response.json()
        rows = []
        for convo_id, data in raw["feedback"].items():
            messages = sorted(data["messages"], key=lambda m: m["sent_date"])
            conversation = "\n".join(
                f"{m['sender']['name'].strip()}{' (deleted)' if m['deleted'] else ''}: {m['content'].strip()}"
                for m in messages
            )
            rows.append(
                {
                    "conversation_id": convo_id,
                    "bot_id": "_".join(convo_id.split("_")[:3]),
                    "user_id": convo_id.split("_")[3],
                    "conversation": conversation,
                    "thumbs_up": data["thumbs_up"],
                    "feedback": data["text"],
                    "model_name": data["model_name"],
                    "public": data.get("public", False),
                }
            )
        return raw, rows

    def get_leaderboard(self, min_feedback: int = 1) -> dict[str, dict]:
        response = httpx.get(
            f"{self.base_url}/leaderboard", headers={"developer_key": self.developer_key}, timeout=20
        )
        assert response.status_code == 200, response.text
        return {
            sid: data
            for sid, data in response.json().items()
            if data["thumbs_up"] + data["thumbs_down"] >= min_feedback
        }

    def deactivate_model(self, submission_id: str) -> dict:
        return self._submitter("GET", f"/models/{submission_id}/deactivate")
