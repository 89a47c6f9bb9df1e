"""The service's OpenAI-compatible API, driven by the `openai` package as a developer would, relayed to the
session's real vLLM server (whose copy of the tiny model ships a chat template: tests/fixtures/vllm.py)."""

from __future__ import annotations

import openai
import pytest

from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import transition


@pytest.fixture(scope="module")
def alice_model(service, served_tiny_model) -> str:
    return service.deployed_submission(
        service.alice_key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, "alice/openai"
    )


@pytest.fixture(scope="module")
def alice(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key=service.alice_key, max_retries=0)


def test_models_lists_only_your_deployed_models(service, served_tiny_model, alice, alice_model):
    bobs = service.deployed_submission(
        service.bob_key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, "bob/openai"
    )
    listed = {model.id: model.owned_by for model in alice.models.list()}
    assert listed[alice_model] == "alice"
    assert bobs not in listed


def test_a_completion_comes_from_your_model(alice, alice_model):
    # A fixed seed: the shared server samples, and the tiny model may otherwise draw its end token first.
    completion = alice.completions.create(model=alice_model, prompt="Once upon a time", max_tokens=8, seed=1)
    assert completion.model == alice_model
    assert completion.choices[0].text and completion.usage.completion_tokens <= 8


def test_a_completion_streams(alice, alice_model):
    # A fixed seed, as above: the tiny model may otherwise draw its end token first.
    stream = alice.completions.create(
        model=alice_model, prompt="Once upon a time", max_tokens=8, stream=True, seed=1
    )
    chunks = list(stream)
    assert len(chunks) > 1
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_a_chat_completion_answers(alice, alice_model):
    reply = alice.chat.completions.create(
        model=alice_model,
        messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=8,
    )
    assert reply.model == alice_model
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content


def test_a_chat_completion_streams(alice, alice_model):
    stream = alice.chat.completions.create(
        model=alice_model,
        messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=8,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text


def test_the_model_servers_own_refusal_reaches_the_caller(alice, alice_model):
    # vLLM refuses templates sent with a request; its 400 and its explanation come back unchanged.
    with pytest.raises(openai.BadRequestError, match="chat template"):
        alice.chat.completions.create(
            model=alice_model,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=4,
            extra_body={"chat_template": "{{ messages[0]['content'] }}"},
        )


def test_another_developers_model_is_not_found(service, alice_model):
    bob = openai.OpenAI(base_url=f"{service.url}/v1", api_key=service.bob_key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        bob.completions.create(model=alice_model, prompt="Hi", max_tokens=4)


def test_a_model_that_is_not_deployed_is_refused(service, served_tiny_model, alice):
    retired = service.deployed_submission(
        service.alice_key,
        served_tiny_model.endpoint_url,
        served_tiny_model.served_model_name,
        "alice/retired",
    )
    with service.store.session() as session:
        transition(session, retired, Status.INACTIVE, message="test")
    with pytest.raises(openai.PermissionDeniedError, match="inactive"):
        alice.completions.create(model=retired, prompt="Hi", max_tokens=4)


def test_a_wrong_key_is_refused(service, alice_model):
    stranger = openai.OpenAI(base_url=f"{service.url}/v1", api_key="gk-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.completions.create(model=alice_model, prompt="Hi", max_tokens=4)


def test_a_model_whose_server_does_not_answer_is_a_bad_gateway(service, alice):
    unreachable = service.deployed_submission(
        service.alice_key, "http://127.0.0.1:9/v1", "gone", "alice/unreachable"
    )
    with pytest.raises(openai.InternalServerError, match="did not answer"):
        alice.completions.create(model=unreachable, prompt="Hi", max_tokens=4)
