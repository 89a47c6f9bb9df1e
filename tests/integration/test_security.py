"""Security: keys only as hashes, no secret in logs, Dagster metadata or manifests, per-developer isolation,
request size limits, a chat proxy nobody can aim elsewhere, and conversations masked before developers
see them."""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from assets import PIPELINE_ASSETS
from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.deployment.kubernetes_manifests import build_deployment, build_service
from guanaco_dagster.service.app import create_app
from guanaco_dagster.settings import Settings
from guanaco_dagster.store.models import Developer, LifecycleRequest, Message
from guanaco_dagster.submissions.developers import hash_key
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import transition
from resources import DeployerResource
from tests.fixtures.pipeline import InProcessPipeline, materialize_feedback_summary, model_variant

ROOT = Path(__file__).resolve().parents[2]
HF_TOKEN = "hf_platform_token_Zq8v1xK3"
S3_SECRET = "s3-secret-value-Mp4rT9wL"
PII_EMAIL = "jo.private@example.com"
PII_PHONE = "+44 20 7946 0958"
REAL_USER = "app-user-8812-real-name"


def _secrets(service) -> dict[str, str]:
    return {"alice's key": service.alice_key, "bob's key": service.bob_key, "beta token": service.beta_token}


# ---------------------------------------------------------------------------------------------------------
# Secrets at rest and in logs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_developer_keys_are_stored_only_as_hashes_and_appear_nowhere_in_the_database(service):
    with service.store.session() as session:
        hashes = {d.name: d.key_hash for d in session.scalars(select(Developer))}
        assert hashes["alice"] == hash_key(service.alice_key) and hashes["bob"] == hash_key(service.bob_key)
        assert {c["name"] for c in inspect(session.get_bind()).get_columns("developers")} == {
            "id",
            "name",
            "key_hash",
            "created_at",
        }
        # Every row of every table, as text: no key and no token, in any column.
        for table in inspect(session.get_bind()).get_table_names():
            dump = json.dumps(
                [list(row) for row in session.execute(text(f'SELECT * FROM "{table}"'))], default=str
            )
            for what, secret in _secrets(service).items():
                assert secret not in dump, f"{what} stored in table {table}"


@pytest.mark.postgres
def test_the_service_log_holds_no_key_or_token(service):
    alice, bob, beta = (
        service.client(service.alice_key),
        service.client(service.bob_key),
        service.beta_client(),
    )
    alice.get("/models/")
    bob.get("/leaderboard")
    service.client("gk-wrong-" + service.alice_key[3:]).get("/models/")  # a near miss is logged as a 401
    service.client().get("/models/", headers={"developer_key": service.bob_key})
    beta.post("/beta/conversations", json={"user_id": "log-check"})
    beta.post("/beta/conversations/nope/feedback", json={"thumbs_up": True})
    log = service.log_path.read_text(errors="replace")
    assert "GET /models/" in log  # the log is there and has these requests in it
    for what, secret in _secrets(service).items():
        assert secret not in log, f"{what} written to the service log"
    assert service.alice_key[3:] not in log


def test_no_secret_reaches_dagster_metadata_run_records_or_logs(
    hub_server, s3_server, tiny_model_dir, tmp_path, caplog
):
    # A private model only the platform's token can read, so the token is really used.
    repo = "security/private-model"
    hub_server.publish(repo, model_variant(tiny_model_dir, tmp_path, "private"))
    hub_server.restrict(repo, tokens=[HF_TOKEN])
    pipeline = InProcessPipeline.create(tmp_path / "home", hub_server, s3_server, hf_token=HF_TOKEN)
    submission_id = pipeline.submit(repo)
    caplog.set_level(logging.DEBUG)

    result = pipeline.run(submission_id, selection=PIPELINE_ASSETS[:3])  # download, tensorize, upload

    assert result.success
    secrets = {"HF token": HF_TOKEN, "S3 secret key": s3_server.secret_key}
    run_id = result.run_id
    records = pipeline.instance.all_logs(run_id)
    materializations = [r for r in records if r.dagster_event and r.dagster_event.is_step_materialization]
    assert len(materializations) == 3
    texts = {
        "event log": "\n".join(repr(record) for record in records),
        "run record": repr(pipeline.instance.get_run_by_id(run_id)),
        "python logs": caplog.text,
    }
    for where, body in texts.items():
        for what, secret in secrets.items():
            assert secret not in body, f"{what} in the {where}"


def test_the_dagster_ui_shows_secret_settings_by_their_environment_variable(monkeypatch):
    from guanaco_dagster.definitions import build_resources

    monkeypatch.setenv("GUANACO_S3_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("GUANACO_HF_TOKEN", HF_TOKEN)
    resources = build_resources(Settings())
    config = json.dumps(
        {name: resource.model_dump() for name, resource in resources.items()}, default=str, sort_keys=True
    )
    assert S3_SECRET not in config and HF_TOKEN not in config
    assert "GUANACO_S3_SECRET_ACCESS_KEY" in config and "GUANACO_HF_TOKEN" in config


def test_kubernetes_manifests_carry_no_secret_value(monkeypatch):
    monkeypatch.setenv("GUANACO_HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("GUANACO_K8S_S3_SECRET_NAME", "model-server-s3")
    deployer = DeployerResource(
        kind="kubernetes",
        state_dir="/unused",
        s3_endpoint="https://object.example.internal",
        s3_access_key_id="AKIA-PLATFORM-KEY-ID",
        s3_secret_access_key=S3_SECRET,
    ).get_deployer()
    spec = DeploymentSpec("org-model_v1", f"s3://guanaco-models/models/{'a' * 64}/", "org-model_v1")
    manifests = json.dumps(
        [build_deployment(spec, deployer.settings), build_service(spec, deployer.settings)]
    )
    for secret in (S3_SECRET, "AKIA-PLATFORM-KEY-ID", HF_TOKEN):
        assert secret not in manifests
    assert '"secretKeyRef": {"name": "model-server-s3"' in manifests


# ---------------------------------------------------------------------------------------------------------
# Isolation between developers
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def alice_private_model(service) -> Iterator[tuple[str, str]]:
    """Alice's deployed model with a PII-laden conversation and feedback; yields (model, conversation)."""
    submission_id = service.deployed_submission(
        service.alice_key, "http://127.0.0.1:9/v1", "private-model", "alice/private-model"
    )
    with service.store.session() as session:
        conversation = start_conversation(
            session, user_id=REAL_USER, bot_name="Captain", submission_id=submission_id
        )
        session.add(Message(conversation_id=conversation.id, sender="user", content=f"I'm at {PII_EMAIL}"))
        session.add(Message(conversation_id=conversation.id, sender="bot", content="Arr, noted."))
        leave_feedback(session, conversation.id, thumbs_up=False, text=f"text me on {PII_PHONE}")
        conversation_id = conversation.id
    yield submission_id, conversation_id
    with service.store.session() as session:
        transition(session, submission_id, Status.INACTIVE)  # out of beta routing for later tests


@pytest.mark.postgres
def test_the_leaderboard_shows_scores_but_no_conversation_user_or_feedback_text(service, alice_private_model):
    submission_id, conversation_id = alice_private_model
    response = service.client(service.bob_key).get("/leaderboard")
    assert response.status_code == 200
    assert submission_id in response.json()
    for leaked in (conversation_id, REAL_USER, PII_EMAIL, PII_PHONE, "text me on", "noted"):
        assert leaked not in response.text


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/feedback/{id}"),
        ("POST", "/models/{id}/deactivate"),
        ("POST", "/models/{id}/teardown"),
        ("POST", "/models/{id}/redeploy"),
        ("GET", "/models/{id}/teardown"),
    ],
)
def test_another_developer_cannot_read_or_act_on_a_model_even_with_the_header_key(
    service, alice_private_model, method, path
):
    submission_id, _ = alice_private_model
    response = service.client().request(
        method, path.format(id=submission_id), headers={"developer_key": service.bob_key}
    )
    assert response.status_code == 404
    with service.store.session() as session:
        requests = session.scalars(
            select(LifecycleRequest).where(LifecycleRequest.submission_id == submission_id)
        )
        assert list(requests) == []


@pytest.mark.postgres
def test_conversations_reach_the_developer_masked_and_pseudonymised(service, alice_private_model):
    submission_id, conversation_id = alice_private_model
    response = service.client(service.alice_key).get(f"/feedback/{submission_id}")
    assert response.status_code == 200
    feedback = response.json()["feedback"].values()
    (entry,) = [v for v in feedback if v["messages"][1]["content"] == "Arr, noted."]
    assert [m["content"] for m in entry["messages"]] == ["I'm at [email]", "Arr, noted."]
    assert entry["text"] == "text me on [phone]"
    for leaked in (REAL_USER, PII_EMAIL, PII_PHONE):
        assert leaked not in response.text


@pytest.mark.postgres
def test_the_feedback_summary_in_the_dagster_ui_is_masked_too(service, alice_private_model, tmp_path):
    submission_id, conversation_id = alice_private_model
    result = materialize_feedback_summary(service.store.url, submission_id, tmp_path)
    (materialization,) = result.asset_materializations_for_node("feedback_summary")
    shown = json.dumps({key: str(value.value) for key, value in materialization.metadata.items()})
    assert "[email]" in shown and conversation_id[:8] in shown
    for leaked in (REAL_USER, PII_EMAIL, PII_PHONE):
        assert leaked not in shown


# ---------------------------------------------------------------------------------------------------------
# Request size and the chat proxy
# ---------------------------------------------------------------------------------------------------------


def _oversized_chunks() -> Iterator[bytes]:
    """A submission whose body streams without a Content-Length: 512 KiB, over the service's 256 KiB."""
    yield b'{"model_repo": "org/streamed", "model_name": "'
    for _ in range(64):
        yield b"x" * 8192
    yield b'"}'


@pytest.mark.postgres
def test_a_streamed_body_over_the_limit_is_never_read_in_full_or_stored(service):
    response = service.client(service.alice_key).post(
        "/models/submit", content=_oversized_chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "org-streamed" not in service.client(service.alice_key).get("/models/").text


@pytest.mark.postgres
def test_a_streamed_body_without_a_length_is_refused_with_413(service):
    response = service.client(service.alice_key).post(
        "/models/submit", content=_oversized_chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "request body over 262144 bytes" in response.json()["detail"]


URL_LIKE = ("url", "endpoint", "host", "port", "address", "base")


def _request_schemas(openapi: dict) -> dict[str, dict]:
    """Every schema a request body can use, by name, with the schemas they reference."""
    schemas = openapi["components"]["schemas"]
    pending = [
        body["content"]["application/json"]["schema"]
        for path in openapi["paths"].values()
        for operation in path.values()
        if (body := operation.get("requestBody"))
    ]
    found: dict[str, dict] = {}
    while pending:
        schema = pending.pop()
        for ref in _refs(schema):
            name = ref.rsplit("/", 1)[-1]
            if name not in found:
                found[name] = schemas[name]
                pending.append(schemas[name])
    return found


def _refs(schema: object) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["$ref"]] if "$ref" in schema else []
        return own + [ref for value in schema.values() for ref in _refs(value)]
    if isinstance(schema, list):
        return [ref for value in schema for ref in _refs(value)]
    return []


def test_no_request_field_can_name_where_the_chat_proxy_connects(tmp_path):
    openapi = create_app(Settings(home=tmp_path)).openapi()
    request_schemas = _request_schemas(openapi)
    assert {"SubmissionRequest", "ChatRequest", "BetaConversationRequest", "BetaMessageRequest"} <= set(
        request_schemas
    )
    for name, schema in request_schemas.items():
        for field in schema.get("properties", {}):
            assert not any(word in field.lower() for word in URL_LIKE), (
                f"{name}.{field} looks like an address"
            )
        assert schema.get("additionalProperties") is False, f"{name} accepts unknown fields"


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/models/submit", {"model_repo": "alice/x", "endpoint_url": "http://169.254.169.254/v1"}),
        ("/models/{id}/chat", {"chat_history": [], "endpoint_url": "http://169.254.169.254/v1"}),
        ("/beta/conversations", {"user_id": "u", "submission_id": "{id}"}),
        ("/beta/conversations", {"user_id": "u", "endpoint_url": "http://10.0.0.1/v1"}),
    ],
)
def test_requests_trying_to_set_an_endpoint_are_refused(service, alice_private_model, path, body):
    submission_id, _ = alice_private_model
    client = service.beta_client() if path.startswith("/beta") else service.client(service.alice_key)
    payload = json.loads(json.dumps(body).replace("{id}", submission_id))
    response = client.post(path.format(id=submission_id), json=payload)
    assert response.status_code == 422
    assert "Extra inputs are not permitted" in response.text


HANDOFF_WRITERS = {"record", "record_handoff"}  # submissions/handoff.py: how stages hand on what they made


def _endpoint_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, value source) of every `<something>.endpoint_url = value` other than on `self`, and of every
    `endpoint_url=value` handed on to the next stage."""
    writes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in HANDOFF_WRITERS:
                writes += [
                    (node.lineno, ast.unparse(k.value)) for k in node.keywords if k.arg == "endpoint_url"
                ]
        if isinstance(node, ast.Assign):
            targets = [
                t
                for target in node.targets
                for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "endpoint_url"
                    and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                ):
                    writes.append((node.lineno, ast.unparse(node.value)))
    return writes


def test_a_submissions_endpoint_is_written_only_from_what_the_deployer_reports():
    writers: dict[str, list[str]] = {}
    for folder in ("guanaco_dagster", "assets", "sensors", "resources"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            writes = _endpoint_writes(ast.parse(path.read_text()))
            if writes:
                writers[str(path.relative_to(ROOT))] = [value for _line, value in writes]
    assert writers.pop("assets/live_deployment.py") == ["deployment.endpoint_url"]
    # `guanaco up` re-adopting a server that survived a restart records what the deployer found.
    assert sorted(writers.pop("guanaco_dagster/embedded/restore.py")) == ["None", "deployment.endpoint_url"]
    # Deactivating or tearing down only ever clears it.
    assert all(
        value == "None" or value.endswith("= None") for values in writers.values() for value in values
    ), writers
