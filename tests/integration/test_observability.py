"""What an operator's Prometheus and log pipeline see of the running service (real uvicorn, real store).

`/metrics` counts requests per route template, routing decisions, failovers, feedback and models by status;
`/metrics/targets` lists the deployed model servers' own metrics; every response carries an X-Request-ID,
and with GUANACO_LOG_FORMAT=json each request is one JSON log line carrying it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guanaco_dagster.beta.conversations import start_conversation
from guanaco_dagster.ports import free_port
from guanaco_dagster.submissions.lifecycle import Status
from tests.fixtures.service import ServiceFixture, running_service


@pytest.fixture(scope="module")
def observed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceFixture]:
    """The service on SQLite with JSON logs, as `guanaco serve` runs with GUANACO_LOG_FORMAT=json.

    Its health watcher waits an hour between checks: only the beta calls below find the models dead.
    """
    home = tmp_path_factory.mktemp("observed-service")
    url = f"sqlite:///{home / 'guanaco.db'}"
    with running_service(
        home, url, GUANACO_LOG_FORMAT="json", GUANACO_HEALTH_CHECK_INTERVAL_S="3600"
    ) as service:
        yield service


def scrape(service: ServiceFixture) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics`, parsed as Prometheus parses it: (name, sorted labels) → value."""
    response = service.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def dead_endpoint() -> str:
    """An OpenAI-style endpoint on a loopback port nothing listens on: every call is refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


def test_requests_are_counted_and_timed_per_route_template_not_per_path(observed_service):
    before = scrape(observed_service)
    client = observed_service.client(observed_service.alice_key)
    for _ in range(3):
        assert client.get("/health").status_code == 200
    for missing in ("org-a_v1", "org-b_v7"):
        assert client.get(f"/models/{missing}").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    after = scrape(observed_service)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("guanaco_http_requests_total", method="GET", route="/health", status="200") == 3
    assert (
        grew("guanaco_http_requests_total", method="GET", route="/models/{submission_id}", status="404") == 2
    )
    assert grew("guanaco_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert grew("guanaco_http_request_duration_seconds_count", method="GET", route="/health") == 3
    assert grew("guanaco_http_request_duration_seconds_sum", method="GET", route="/health") > 0
    routes = {dict(labels).get("route") for (_name, labels) in after}
    assert not any("org-a_v1" in str(route) or "/no/such" in str(route) for route in routes)


def test_models_are_counted_by_status_from_the_store(observed_service):
    before = scrape(observed_service)
    observed_service.deployed_submission(observed_service.alice_key, dead_endpoint(), "m", "org/counted")
    after = scrape(observed_service)
    assert (
        value(after, "guanaco_models", status="deployed")
        == value(before, "guanaco_models", status="deployed") + 1
    )
    assert {dict(labels)["status"] for (name, labels) in after if name == "guanaco_models"} == {
        str(status) for status in Status
    }


def test_routing_decisions_failovers_and_unavailability_are_counted(observed_service):
    # Every model deployed in this module refuses calls: the conversation moves until none is left.
    for repo in ("org/dead-a", "org/dead-b"):
        observed_service.deployed_submission(observed_service.bob_key, dead_endpoint(), "d", repo)
    before = scrape(observed_service)
    beta = observed_service.beta_client()
    started = beta.post("/beta/conversations", json={"user_id": "u-failover"})
    assert started.status_code == 200, started.text
    routed_to = started.json()["submission_id"]
    reply = beta.post(
        f"/beta/conversations/{started.json()['conversation_id']}/messages", json={"message": "hi"}
    )
    assert reply.status_code == 503, reply.text
    after = scrape(observed_service)

    def grew(name: str) -> dict[str, float]:
        return {
            dict(labels).get("submission_id", ""): count - before.get((sample, labels), 0.0)
            for (sample, labels), count in after.items()
            if sample == name and count != before.get((sample, labels), 0.0)
        }

    failovers, routed = grew("guanaco_beta_failovers_total"), grew("guanaco_beta_routed_conversations_total")
    assert failovers[routed_to] == 1
    assert 1 <= sum(failovers.values()) <= 2  # MAX_FAILOVERS
    # Each move is a routing decision of its own, to a model not tried before.
    assert sum(routed.values()) == 1 + sum(failovers.values())
    assert set(routed.values()) == {1}
    # Fewer moves than allowed means routing itself found no model left.
    no_model = grew("guanaco_beta_no_model_available_total")
    assert no_model == ({} if sum(failovers.values()) == 2 else {"": 1})


def test_feedback_received_is_counted_once_per_idempotency_key(observed_service):
    submission_id = observed_service.deployed_submission(
        observed_service.alice_key, dead_endpoint(), "f", "org/feedback-counted"
    )
    with observed_service.store.session() as session:
        conversation_id = start_conversation(session, user_id="u-fb", submission_id=submission_id).id
    before = scrape(observed_service)
    beta = observed_service.beta_client()
    for _ in range(2):  # a retry of the same post
        posted = beta.post(
            f"/beta/conversations/{conversation_id}/feedback",
            json={"thumbs_up": False, "text": "dull", "idempotency_key": "fb-1"},
        )
        assert posted.status_code == 200, posted.text
    after = scrape(observed_service)
    labels = {"submission_id": submission_id, "verdict": "down"}
    assert (
        value(after, "guanaco_beta_feedback_received_total", **labels)
        - value(before, "guanaco_beta_feedback_received_total", **labels)
        == 1
    )


def test_deployed_model_servers_metrics_are_listed_for_prometheus_and_their_owner(observed_service):
    endpoint = dead_endpoint()
    submission_id = observed_service.deployed_submission(
        observed_service.alice_key, endpoint, "t", "org/listed"
    )
    expected_url = endpoint.removesuffix("/v1") + "/metrics"

    targets = observed_service.client().get("/metrics/targets")
    assert targets.status_code == 200
    (group,) = [g for g in targets.json() if g["labels"]["submission_id"] == submission_id]
    host_port = expected_url.removeprefix("http://").removesuffix("/metrics")
    assert group["targets"] == [host_port]
    assert group["labels"]["__metrics_path__"] == "/metrics" and group["labels"]["__scheme__"] == "http"

    info = observed_service.client(observed_service.alice_key).get(f"/models/{submission_id}").json()
    assert info["metrics_url"] == expected_url
    with observed_service.store.session() as session:
        from guanaco_dagster.submissions.submissions import transition

        transition(session, submission_id, Status.INACTIVE)
    assert (
        observed_service.client(observed_service.alice_key)
        .get(f"/models/{submission_id}")
        .json()["metrics_url"]
        is None
    )
    listed = {g["labels"]["submission_id"] for g in observed_service.client().get("/metrics/targets").json()}
    assert submission_id not in listed


def test_a_callers_request_id_is_echoed_and_a_missing_or_unsafe_one_is_replaced(observed_service):
    client = observed_service.client()
    assert (
        client.get("/health", headers={"X-Request-ID": "trace-42.a"}).headers["X-Request-ID"] == "trace-42.a"
    )
    generated = client.get("/health").headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    unsafe = client.get("/health", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
    assert unsafe != "x" * 500 and len(unsafe) == 32


def test_each_request_is_one_json_log_line_with_its_request_id(observed_service):
    client = observed_service.client(observed_service.alice_key)
    assert client.get("/models/nobody_v1", headers={"X-Request-ID": "log-line-1"}).status_code == 404
    lines = [
        json.loads(line)
        for line in observed_service.log_path.read_text().splitlines()
        if line.startswith("{") and "log-line-1" in line
    ]
    assert len(lines) == 1
    (entry,) = lines
    assert entry["request_id"] == "log-line-1"
    assert (entry["method"], entry["route"], entry["status"]) == ("GET", "/models/{submission_id}", 404)
    assert 0 < entry["duration_s"] < 30 and entry["level"] == "INFO"
