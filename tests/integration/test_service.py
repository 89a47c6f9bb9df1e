"""The HTTP service against real uvicorn on PostgreSQL: auth, isolation, validation, every route."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from guanaco_dagster.beta.conversations import leave_feedback, start_conversation
from guanaco_dagster.store.models import Feedback, LifecycleRequest, Message, Submission
from guanaco_dagster.submissions.submissions import get_submission

DEVELOPER_ROUTES = [
    ("POST", "/models/submit", {"model_repo": "org/model"}),
    ("GET", "/models/", None),
    ("GET", "/models/x_v1", None),
    ("GET", "/models/x_v1/deactivate", None),
    ("POST", "/models/x_v1/teardown", None),
    ("GET", "/models/x_v1/redeploy", None),
    ("POST", "/models/x_v1/chat", {"chat_history": []}),
    ("GET", "/feedback/x_v1", None),
    ("GET", "/models/x_v1/evaluate", None),
    ("GET", "/v1/models", None),
]


def _count(store, model) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.fixture(scope="module")
def alice_model(service, served_tiny_model) -> str:
    """One of alice's submissions, deployed on the session's vLLM server."""
    return service.deployed_submission(
        service.alice_key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, "alice/chatty"
    )


def test_health_answers_ok(service):
    assert service.client().get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize(("method", "path", "body"), DEVELOPER_ROUTES)
def test_developer_routes_refuse_a_missing_key(service, method, path, body):
    response = service.client().request(method, path, json=body)
    assert response.status_code == 401
    assert "developer key is required" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), DEVELOPER_ROUTES)
def test_developer_routes_refuse_a_wrong_key(service, method, path, body):
    response = service.client("gk-not-a-key").request(method, path, json=body)
    assert response.status_code == 401


def test_submit_records_a_pending_submission_with_its_log(service):
    client = service.client(service.alice_key)
    response = client.post("/models/submit", json={"model_repo": "alice/Tiny-Model", "hf_revision": "v2"})
    assert response.status_code == 200
    submission_id = response.json()["submission_id"]
    assert submission_id.startswith("alice-tiny-model_v")
    assert client.get("/models/").json()[submission_id] == "pending"
    info = client.get(f"/models/{submission_id}").json()
    assert (info["status"], info["hf_revision"], info["stages"]) == ("pending", "v2", [])
    assert info["logs"][0]["level"] == "INFO" and "submitted" in info["logs"][0]["entry"]


def test_the_developer_key_header_is_accepted_like_chais_older_client(service):
    response = service.client().get("/models/", headers={"developer_key": service.alice_key})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"model_repo": "no-slash"}, ["body", "model_repo"]),
        (
            {"model_repo": "org/m", "generation_params": {"temperature": 5}},
            ["body", "generation_params", "temperature"],
        ),
        ({"model_repo": "org/m", "generation_params": {"top_k": 0}}, ["body", "generation_params", "top_k"]),
        (
            {"model_repo": "org/m", "formatter": {"memory_template": "no placeholder"}},
            ["body", "formatter", "memory_template"],
        ),
        (
            {"model_repo": "org/m", "formatter": {"user_template": "{user_name}:"}},
            ["body", "formatter", "user_template"],
        ),
        ({"model_repo": "org/m", "surprise": 1}, ["body", "surprise"]),
        ({}, ["body", "model_repo"]),
    ],
    ids=["repo", "temperature", "top-k", "memory-template", "user-template", "unknown-field", "missing-repo"],
)
def test_malformed_submissions_get_422_naming_the_field_and_write_nothing(service, payload, field):
    before = _count(service.store, Submission)
    response = service.client(service.alice_key).post("/models/submit", json=payload)
    assert response.status_code == 422
    assert field in [error["loc"] for error in response.json()["detail"]]
    assert _count(service.store, Submission) == before


def test_another_developers_submission_is_not_found(service, alice_model):
    bob = service.client(service.bob_key)
    for method, path, body in [
        ("GET", f"/models/{alice_model}", None),
        ("GET", f"/feedback/{alice_model}", None),
        ("POST", f"/models/{alice_model}/chat", {"chat_history": [{"sender": "user", "message": "hi"}]}),
        ("GET", f"/models/{alice_model}/deactivate", None),
    ]:
        response = bob.request(method, path, json=body)
        assert response.status_code == 404, path
        assert alice_model in response.json()["detail"]
    assert alice_model not in bob.get("/models/").json()


def test_developer_chat_formats_the_history_and_returns_the_reply(service, alice_model):
    body = {
        "memory": "A cheerful pirate.",
        "prompt": "You meet on a ship.",
        "chat_history": [
            {"sender": "Captain", "message": "Ahoy!"},
            {"sender": "user", "message": "Hello captain {not a placeholder}"},
        ],
        "bot_name": "Captain",
        "user_name": "You",
    }
    response = service.client(service.alice_key).post(f"/models/{alice_model}/chat", json=body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["model_input"] == (
        "Captain's Persona: A cheerful pirate.\n####\nYou meet on a ship.\n<START>\n"
        "Captain: Ahoy!\nYou: Hello captain {not a placeholder}\nCaptain:"
    )
    assert isinstance(reply["model_output"], str)


def test_chat_with_a_model_that_is_not_serving_is_a_conflict(service):
    submission_id = (
        service.client(service.alice_key).post("/models/submit", json={"model_repo": "alice/p"}).json()
    )
    response = service.client(service.alice_key).post(
        f"/models/{submission_id['submission_id']}/chat", json={"chat_history": []}
    )
    assert response.status_code == 409 and "not serving" in response.json()["detail"]


def _feedback_on(service, submission_id: str, user_id: str, thumbs_up: bool, text: str) -> str:
    with service.store.session() as session:
        conversation = start_conversation(
            session, user_id=user_id, bot_id="bot_42", bot_name="Captain", submission_id=submission_id
        )
        session.add(Message(conversation_id=conversation.id, sender="user", content="mail me at a@b.example"))
        session.add(
            Message(conversation_id=conversation.id, sender="bot", content="Arr, see https://x.example/p")
        )
        leave_feedback(session, conversation.id, thumbs_up=thumbs_up, text=text)
        return conversation.id


def test_feedback_comes_anonymised_in_chais_shape(service, alice_model):
    _feedback_on(service, alice_model, "real-user-7", False, "call +44 20 7946 0958")
    response = service.client().get(f"/feedback/{alice_model}", headers={"developer_key": service.alice_key})
    assert response.status_code == 200
    payload = response.json()
    (key,) = [k for k, entry in payload["feedback"].items() if entry["text"] == "call [phone]"]
    parts = key.split("_")
    assert "_".join(parts[:3]) == "_bot_bot-42" and parts[3].startswith("user-")  # chaiverse's parsing
    entry = payload["feedback"][key]
    assert entry["text"] == "call [phone]" and entry["thumbs_up"] is False
    contents = [m["content"] for m in entry["messages"]]
    assert contents == ["mail me at [email]", "Arr, see [url]"]
    assert [m["sender"]["name"] for m in entry["messages"]] == [parts[3], "Captain"]
    assert "real-user-7" not in response.text
    assert payload["thumbs_down"] >= 1


def test_leaderboard_lists_deployed_models_keyed_by_submission(service, alice_model):
    _feedback_on(service, alice_model, "u-lb", True, "fun")
    board = service.client(service.bob_key).get("/leaderboard").json()
    entry = board[alice_model]
    assert (
        entry["thumbs_up"] >= 1 and entry["total_feedback_count"] == entry["thumbs_up"] + entry["thumbs_down"]
    )
    assert 0 <= entry["wilson_lower_bound"] <= entry["thumbs_up_ratio"] <= 1
    assert entry["overall_rank"] >= 1


def test_beta_routes_need_the_service_token(service):
    body = {"user_id": "u1"}
    assert service.client().post("/beta/conversations", json=body).status_code == 401
    assert service.client(service.alice_key).post("/beta/conversations", json=body).status_code == 401


def test_beta_conversation_chats_and_stores_feedback_once_per_key(service, alice_model):
    beta = service.beta_client()
    started = beta.post("/beta/conversations", json={"user_id": "app-1", "bot_name": "Captain"}).json()
    conversation_id = started["conversation_id"]
    with service.store.session() as session:
        assert get_submission(session, started["submission_id"]).status == "deployed"
    reply = beta.post(f"/beta/conversations/{conversation_id}/messages", json={"message": "Hello!"})
    assert reply.status_code == 200 and isinstance(reply.json()["reply"], str)
    body = {"thumbs_up": True, "text": "fun", "idempotency_key": f"{conversation_id}-1"}
    first = beta.post(f"/beta/conversations/{conversation_id}/feedback", json=body).json()
    retry = beta.post(f"/beta/conversations/{conversation_id}/feedback", json=body).json()
    assert (first["stored"], retry["stored"], retry["feedback_id"]) == (True, False, first["feedback_id"])
    other = beta.post(f"/beta/conversations/{conversation_id}/feedback", json={"thumbs_up": False})
    assert other.status_code == 409
    with service.store.session() as session:
        assert session.scalar(select(func.count()).where(Feedback.conversation_id == conversation_id)) == 1
        assert session.scalar(select(func.count()).where(Message.conversation_id == conversation_id)) == 2


def test_unknown_conversation_is_not_found(service):
    response = service.beta_client().post("/beta/conversations/nope/messages", json={"message": "hi"})
    assert response.status_code == 404


def test_deactivate_records_a_request_and_leaves_routing_at_once(service, served_tiny_model):
    submission_id = service.deployed_submission(
        service.bob_key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, "bob/retiring"
    )
    bob = service.client(service.bob_key)
    response = bob.get(f"/models/{submission_id}/deactivate")
    assert response.status_code == 200
    assert response.json()["action"] == "deactivate"
    assert bob.post(f"/models/{submission_id}/deactivate").status_code == 409  # one request at a time
    for _ in range(10):
        routed = service.beta_client().post("/beta/conversations", json={"user_id": "u"}).json()
        assert routed["submission_id"] != submission_id
    with service.store.session() as session:
        assert (
            session.scalar(select(func.count()).where(LifecycleRequest.submission_id == submission_id)) == 1
        )


def test_actions_a_status_does_not_allow_are_conflicts(service):
    alice = service.client(service.alice_key)
    submission_id = alice.post("/models/submit", json={"model_repo": "alice/new"}).json()["submission_id"]
    response = alice.get(f"/models/{submission_id}/redeploy")
    assert response.status_code == 409 and "pending" in response.json()["detail"]


def test_oversized_bodies_are_refused_before_parsing(service):
    response = service.client(service.alice_key).post(
        "/models/submit", json={"model_repo": "org/m", "model_name": "x" * 300_000}
    )
    assert response.status_code == 413


def test_nul_characters_from_users_are_stored_without_error(service, alice_model):
    beta = service.beta_client()
    started = beta.post("/beta/conversations", json={"user_id": "nul-user"}).json()
    reply = beta.post(
        f"/beta/conversations/{started['conversation_id']}/messages", json={"message": "hi\x00there"}
    )
    assert reply.status_code == 200
    with service.store.session() as session:
        stored = session.scalars(
            select(Message).where(Message.conversation_id == started["conversation_id"])
        ).all()
    assert stored[0].content == "hithere"


def test_feedback_is_categorised_by_the_service_as_it_arrives(service, alice_model):
    """The service warms the embedding classifier at start; once it is loaded, each feedback row carries
    its text's categories, so summary runs never load the model (rows from before stay None)."""
    beta = service.beta_client()

    def post_feedback(text: str) -> int:
        started = beta.post("/beta/conversations", json={"user_id": "app-cat"}).json()
        beta.post(f"/beta/conversations/{started['conversation_id']}/messages", json={"message": "Hi"})
        posted = beta.post(
            f"/beta/conversations/{started['conversation_id']}/feedback",
            json={"thumbs_up": False, "text": text},
        )
        return posted.json()["feedback_id"]

    def categories(feedback_id: int) -> list[str] | None:
        with service.store.session() as session:
            return session.get(Feedback, feedback_id).categories

    deadline = time.monotonic() + 240
    feedback_id = post_feedback("it kept saying the very same sentence again and again")
    while categories(feedback_id) is None and time.monotonic() < deadline:
        time.sleep(2)
        feedback_id = post_feedback("it kept saying the very same sentence again and again")
    assert categories(feedback_id) is not None, "the service never categorised feedback on arrival"
    assert "repetitive" in categories(feedback_id)
