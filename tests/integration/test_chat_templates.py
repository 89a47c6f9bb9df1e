"""Chat templates on real vLLM servers.

- The Hub's tiny Llama ships no chat template: the platform writes one built from the formatter into its
  artifact, and vLLM then answers chat completions (the openai package, directly and through the service's
  OpenAI API) with exactly the prompt `format_prompt` builds.
- Intake records `auto` for a model with a template, and the pipeline writes the template only when needed.
- An `auto` submission's beta chat goes through the chat endpoint and the model's own template (the
  session's served copy ships one: tests/fixtures/vllm.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from assets import PIPELINE_ASSETS
from guanaco_dagster.beta.conversations import start_conversation
from guanaco_dagster.deployment.base import Deployment, DeploymentSpec
from guanaco_dagster.stages.chat_templates import CHAT_TEMPLATE_FILENAME, ships_chat_template
from guanaco_dagster.stages.s3_cache import upload_artifact
from guanaco_dagster.stages.tensorize import TensorizedArtifact, artifact_digest, tensorize_model
from guanaco_dagster.submissions.chat_format import ChatFormat
from guanaco_dagster.submissions.chat_template import (
    formatter_chat_template,
    formatter_messages,
    formatter_template_kwargs,
    platform_chat_template,
)
from guanaco_dagster.submissions.developers import get_or_create_developer
from guanaco_dagster.submissions.formatter import ChatTurn, PromptFormatter, format_prompt
from guanaco_dagster.submissions.request import SubmissionRequest
from guanaco_dagster.submissions.submissions import create_submission, get_submission
from tests.fixtures.pipeline import InProcessPipeline, model_variant
from tests.fixtures.vllm import ServedModel, make_test_deployer

FORMATTED_SUBMISSION_ID = "tests-tiny-llama-formatter-template"
FORMATTED_MODEL_NAME = "tiny-llama-formatted"
NAMES = {"bot_name": "Vega", "user_name": "Sam"}
CONVERSATIONS = {
    "persona, example and turns": (
        "Vega is the navigation AI.\nShe is precise.",
        "Sam: hi\nVega: Hello.",
        [ChatTurn("bot", "Ahoy!"), ChatTurn("user", "Where are we {heading}?")],
    ),
    "a bare first message": ("", "", [ChatTurn("user", "Hello")]),
}


@dataclass(frozen=True)
class FormattedModel:
    """A vLLM server on the tiny Llama whose artifact carries the platform's template (default formatter)."""

    artifact: TensorizedArtifact
    deployment: Deployment

    @property
    def server_url(self) -> str:
        return self.deployment.endpoint_url.removesuffix("/v1")


@pytest.fixture(scope="module")
def formatted_artifact(tiny_model_dir: Path, tmp_path_factory) -> TensorizedArtifact:
    """The template-less tiny Llama tensorized as the pipeline does it: with the platform's template."""
    template = platform_chat_template(tiny_model_dir, PromptFormatter())
    return tensorize_model(tiny_model_dir, tmp_path_factory.mktemp("formatted-artifact"), template)


@pytest.fixture(scope="module")
def formatted_model(
    s3_server, formatted_artifact: TensorizedArtifact, tmp_path_factory
) -> Iterator[FormattedModel]:
    """The formatted artifact, uploaded to S3 and deployed (a second vLLM server, for this module)."""
    artifact = formatted_artifact
    uri = upload_artifact(
        s3_server.client(), s3_server.bucket, artifact.out_dir, artifact_digest(artifact.out_dir)
    ).uri
    deployer = make_test_deployer(s3_server, tmp_path_factory.mktemp("formatted-servers"))
    deployment = deployer.deploy(DeploymentSpec(FORMATTED_SUBMISSION_ID, uri, FORMATTED_MODEL_NAME))
    try:
        yield FormattedModel(artifact, deployment)
    finally:
        deployer.teardown(FORMATTED_SUBMISSION_ID)


def _expected_prompt(memory: str, prompt: str, history: list[ChatTurn]) -> str:
    return format_prompt(
        PromptFormatter(),
        memory=memory,
        prompt=prompt,
        history=history,
        count_tokens=len,
        max_input_tokens=100_000,
        **NAMES,
    )


def _tokenize(server_url: str, **body: object) -> list[int]:
    response = httpx.post(f"{server_url}/tokenize", json={"model": FORMATTED_MODEL_NAME, **body}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["tokens"]


def test_the_hub_model_ships_no_template_so_its_artifact_gets_the_formatters(
    tiny_model_dir: Path, formatted_artifact: TensorizedArtifact
) -> None:
    assert not ships_chat_template(tiny_model_dir)
    assert formatted_artifact.supplied_chat_template
    written = (formatted_artifact.out_dir / CHAT_TEMPLATE_FILENAME).read_text()
    assert written == formatter_chat_template(PromptFormatter())


@pytest.mark.vllm
def test_chat_completions_answer_through_the_openai_package(formatted_model: FormattedModel) -> None:
    client = openai.OpenAI(base_url=formatted_model.deployment.endpoint_url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model=FORMATTED_MODEL_NAME, messages=[{"role": "user", "content": "Hello!"}], max_tokens=8
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens >= 1


@pytest.mark.vllm
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_the_prompt_vllm_builds_for_a_chat_is_the_one_format_prompt_builds(
    formatted_model: FormattedModel, conversation: str
) -> None:
    memory, prompt, history = CONVERSATIONS[conversation]
    expected = _expected_prompt(memory, prompt, history)
    client = openai.OpenAI(base_url=formatted_model.deployment.endpoint_url, api_key="unused", max_retries=0)

    reply = client.chat.completions.create(
        model=FORMATTED_MODEL_NAME,
        messages=formatter_messages(memory=memory, prompt=prompt, history=history),
        max_tokens=4,
        extra_body={"chat_template_kwargs": formatter_template_kwargs(**NAMES), "return_token_ids": True},
    )

    # The completions path tokenizes the formatted prompt with the tokenizer's own special tokens.
    completion_ids = _tokenize(formatted_model.server_url, prompt=expected)
    assert reply.model_extra["prompt_token_ids"] == completion_ids
    detokenized = httpx.post(
        f"{formatted_model.server_url}/detokenize",
        json={"model": FORMATTED_MODEL_NAME, "tokens": completion_ids},
        timeout=30,
    ).json()["prompt"]
    assert detokenized == expected


@pytest.mark.vllm
def test_chat_completions_answer_through_the_services_openai_api(
    service, formatted_model: FormattedModel
) -> None:
    model = service.deployed_submission(
        service.alice_key, formatted_model.deployment.endpoint_url, FORMATTED_MODEL_NAME, "alice/no-template"
    )
    alice = openai.OpenAI(base_url=f"{service.url}/v1", api_key=service.alice_key, max_retries=0)
    memory, prompt, history = CONVERSATIONS["persona, example and turns"]

    reply = alice.chat.completions.create(
        model=model,
        messages=formatter_messages(memory=memory, prompt=prompt, history=history),
        max_tokens=4,
        extra_body={"chat_template_kwargs": formatter_template_kwargs(**NAMES)},
    )

    assert reply.model == model and reply.choices[0].message.role == "assistant"
    expected_ids = _tokenize(formatted_model.server_url, prompt=_expected_prompt(memory, prompt, history))
    assert reply.usage.prompt_tokens == len(expected_ids)


def _chat_requests(served: ServedModel) -> tuple[int, int]:
    """(chat completions, completions) the session's vLLM server has answered, from its access log."""
    log = Path(served.deployment.details["log_path"]).read_text(errors="replace")
    return (
        len(re.findall(r'"POST /v1/chat/completions HTTP/1\.1" 200', log)),
        len(re.findall(r'"POST /v1/completions HTTP/1\.1" 200', log)),
    )


@pytest.mark.vllm
def test_an_auto_submissions_beta_chat_goes_through_the_models_own_template(
    service, served_tiny_model: ServedModel
) -> None:
    model = service.deployed_submission(
        service.alice_key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, "alice/auto"
    )
    with service.store.session() as session:
        get_submission(session, model).chat_format = ChatFormat.AUTO
        conversation = start_conversation(
            session,
            user_id="app-auto",
            bot_name="Captain",
            user_name="Sam",
            memory="A pirate.",
            submission_id=model,
        ).id
    chats_before, completions_before = _chat_requests(served_tiny_model)

    response = service.beta_client().post(
        f"/beta/conversations/{conversation}/messages", json={"message": "Hi"}
    )

    assert response.status_code == 200, response.text
    assert _chat_requests(served_tiny_model) == (chats_before + 1, completions_before)


@pytest.mark.vllm
def test_an_auto_submissions_developer_chat_shows_the_prompt_the_models_template_made(
    service, served_tiny_model: ServedModel
) -> None:
    model = service.deployed_submission(
        service.alice_key,
        served_tiny_model.endpoint_url,
        served_tiny_model.served_model_name,
        "alice/auto-dev",
    )
    with service.store.session() as session:
        get_submission(session, model).chat_format = ChatFormat.AUTO
    body = {
        "memory": "A pirate.",
        "chat_history": [
            {"sender": "user", "message": "Hi"},
            {"sender": "Captain", "message": "Arr"},
            {"sender": "user", "message": "Bye"},
        ],
        "bot_name": "Captain",
        "user_name": "Sam",
    }

    response = service.client(service.alice_key).post(f"/models/{model}/chat", json=body)

    assert response.status_code == 200, response.text
    # The served copy's template writes "role: content" lines and an "assistant:" cue.
    assert response.json()["model_input"] == (
        "system: You are Captain, chatting with Sam.\n\nA pirate.\n"
        "user: Hi\nassistant: Arr\nuser: Bye\nassistant:"
    )


def _intake_and_tensorize(pipeline: InProcessPipeline, repo: str, formatter: dict | None) -> tuple[str, Path]:
    with pipeline.store.session() as session:
        owner = get_or_create_developer(session, "ada")
        request = SubmissionRequest(model_repo=repo, formatter=formatter)
        submission_id = create_submission(session, owner, request).id
    result = pipeline.run(submission_id, selection=PIPELINE_ASSETS[:2])
    assert result.success, pipeline.outcome(submission_id).failure_reason
    with pipeline.store.session() as session:
        chat_format = get_submission(session, submission_id).chat_format
    return chat_format, pipeline.resources["pipeline"].staging.tensorized_dir(submission_id)


def test_intake_picks_auto_for_a_model_with_a_template_and_the_formatter_otherwise(
    hub_server, s3_server, tiny_model_dir: Path, tmp_path: Path
) -> None:
    instruct = model_variant(tiny_model_dir, tmp_path, "instruct")
    tokenizer_config = json.loads((instruct / "tokenizer_config.json").read_text())
    own_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|assistant|>"
    tokenizer_config["chat_template"] = own_template
    (instruct / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    hub_server.publish("chat-templates/instruct", instruct)
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server)
    vicuna = {"user_template": "USER: {message}\n", "response_template": "ASSISTANT:"}

    auto, auto_artifact = _intake_and_tensorize(pipeline, "chat-templates/instruct", None)
    default, default_artifact = _intake_and_tensorize(pipeline, hub_server.repo_id, None)
    chosen, chosen_artifact = _intake_and_tensorize(pipeline, hub_server.repo_id, vicuna)

    assert auto == ChatFormat.AUTO
    assert not (auto_artifact / CHAT_TEMPLATE_FILENAME).exists()
    assert json.loads((auto_artifact / "tokenizer_config.json").read_text())["chat_template"] == own_template
    assert default == ChatFormat.FORMATTER_DEFAULT
    assert (default_artifact / CHAT_TEMPLATE_FILENAME).read_text() == formatter_chat_template(
        PromptFormatter()
    )
    assert chosen == ChatFormat.FORMATTER
    assert (chosen_artifact / CHAT_TEMPLATE_FILENAME).read_text() == formatter_chat_template(
        PromptFormatter(**vicuna)
    )
