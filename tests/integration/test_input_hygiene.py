"""Input hygiene through the real service: repo ids, revisions, names and templates that would fail later,
or mislead, are refused at once with 422 naming the field, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from guanaco_dagster.store.models import Submission

GOOD_REPO = "alice/hygiene"

# name → (request fields, the field the 422 names, words of its message)
REFUSED: dict[str, tuple[dict[str, Any], tuple[str, ...], str]] = {
    "repo-id-with-a-trailing-newline": (
        {"model_repo": "org/model\n"},
        ("model_repo",),
        "model_repo may not contain control characters",
    ),
    "repo-id-ending-in-dot-git": (
        {"model_repo": "org/model.git"},
        ("model_repo",),
        "ends in '.git': give the repo id alone",
    ),
    "repo-id-with-an-escape": (
        {"model_repo": "org/mo\x1bdel"},
        ("model_repo",),
        "model_repo may not contain control characters",
    ),
    "revision-with-a-nul-byte": (
        {"model_repo": GOOD_REPO, "hf_revision": "main\x00"},
        ("hf_revision",),
        "hf_revision may not contain control characters",
    ),
    "revision-with-a-trailing-newline": (
        {"model_repo": GOOD_REPO, "hf_revision": "main\n"},
        ("hf_revision",),
        "hf_revision may not contain control characters",
    ),
    "revision-with-dot-dot": (
        {"model_repo": GOOD_REPO, "hf_revision": "main/../x"},
        ("hf_revision",),
        "is not a branch, tag or commit name",
    ),
    "model-name-with-terminal-escapes": (
        {"model_repo": GOOD_REPO, "model_name": "nice\x1b[2J"},
        ("model_name",),
        "model_name may not contain control characters",
    ),
    "oversized-memory-template": (
        {"model_repo": GOOD_REPO, "formatter": {"memory_template": "{memory}" + "x" * 20_000}},
        ("formatter", "memory_template"),
        "memory_template is 20,008 characters, over the 2,000 limit",
    ),
    "template-with-a-nul-byte": (
        {"model_repo": GOOD_REPO, "formatter": {"bot_template": "{bot_name}:\x00 {message}\n"}},
        ("formatter", "bot_template"),
        "bot_template may not contain control characters",
    ),
    "best-of-times-max-output-tokens-too-large": (
        {"model_repo": GOOD_REPO, "generation_params": {"best_of": 16, "max_output_tokens": 2048}},
        ("generation_params",),
        "best_of × max_output_tokens is 16 × 2048 = 32,768 tokens per reply, over the 4,096 limit",
    ),
}


def _stored_submissions(service) -> int:
    with service.store.session() as session:
        return session.scalar(select(func.count()).select_from(Submission))


@pytest.mark.postgres
@pytest.mark.parametrize("name", list(REFUSED))
def test_a_malformed_request_is_refused_with_422_naming_the_field(service, name):
    fields, field, words = REFUSED[name]
    before = _stored_submissions(service)

    response = service.client(service.alice_key).post("/models/submit", json=fields)

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(tuple(error["loc"][1:]) == field and words in error["msg"] for error in errors), errors
    assert _stored_submissions(service) == before


@pytest.mark.postgres
def test_a_well_formed_request_at_the_limits_is_accepted(service):
    fields = {
        "model_repo": GOOD_REPO,
        "hf_revision": "refs/pr/1",
        "model_name": "Nova – v2 🚀",
        "formatter": {"memory_template": "{memory}" + "\n" * 1_992},
        "generation_params": {"best_of": 2, "max_output_tokens": 2048},
    }
    response = service.client(service.alice_key).post("/models/submit", json=fields)
    assert response.status_code == 200, response.text


@pytest.mark.postgres
@pytest.mark.parametrize("key", ["retry\x00", "retry\x1b[2J"])
def test_feedback_with_a_control_character_in_its_idempotency_key_is_refused_with_422(service, key):
    beta = service.client(service.beta_token)

    response = beta.post(
        "/beta/conversations/no-such-conversation/feedback",
        json={
            "thumbs_up": True,
            "idempotency_key": key,
        },
    )

    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == "idempotency_key"
    assert "idempotency_key may not contain control characters" in error["msg"]
