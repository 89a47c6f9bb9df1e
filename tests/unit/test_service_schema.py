"""Property-based exploration of the service's own OpenAPI schema: whatever is sent, never a 5xx.

Schemathesis generates the requests from the schema; Hypothesis runs them (schemathesis' pytest
fixture integration does not work under pytest 9, so the strategies are driven directly).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 25


def test_no_generated_request_causes_a_server_error(service, served_tiny_model):
    # Two deployed models, so chat, beta and battle routes reach the model server, not only their error paths.
    for key, repo in ((service.alice_key, "alice/fuzzed"), (service.bob_key, "bob/fuzzed")):
        service.deployed_submission(
            key, served_tiny_model.endpoint_url, served_tiny_model.served_model_name, repo
        )
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    server_errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def explore(case) -> None:
            token = service.beta_token if case.path.startswith("/beta") else service.alice_key
            response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=60)
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} → {response.status_code}: {response.text}"[:500]
                )

        explore()

    assert not server_errors, "\n".join(server_errors[:10])
