"""KubernetesDeployer through the kubernetes client's real HTTP layer, against a loopback fake API server.

The fake keeps objects in memory, answers create/read/replace/delete/list with the API server's status
codes and Status bodies, and streams watch events (chunked, like the real one). A scenario plays the
ReplicaSet controller, scheduler and kubelet: it turns each applied Deployment into a pod and moves the
pod through the states under test. Faults are injected there, never by mocking the client.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes.client import ApiClient, Configuration

from guanaco_dagster.deployment.base import DeploymentError, DeploymentSpec
from guanaco_dagster.deployment.kubernetes import KubernetesDeployer, resource_name
from guanaco_dagster.deployment.kubernetes_config import KubernetesSettings

NAMESPACE = "guanaco-test"
SPEC = DeploymentSpec(
    submission_id="Org-Model_v1",
    artifact_uri="s3://guanaco-models/models/abc/",
    served_model_name="Org-Model_v1",
)
KINDS = {"deployments": "Deployment", "services": "Service", "pods": "Pod", "events": "Event"}
GROUP = {"deployments": "apps/v1", "services": "v1", "pods": "v1", "events": "v1"}
ROUTE = re.compile(
    r"^/(?:apis/apps/v1|api/v1)/namespaces/(?P<ns>[^/]+)/(?P<resource>deployments|services|pods|events)"
    r"(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(obj: dict[str, Any], query: dict[str, str]) -> bool:
    """Equality-based label and field selectors, as the API server applies them."""
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, query.get("labelSelector", "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        path, _, value = term.partition("=")
        node: Any = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != value:
            return False
    return True


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeKubeAPI:
    """In-memory objects, a global resourceVersion, a history for watches, recorded requests, faults."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.faults: dict[tuple[str, str], list[int]] = {}
        self.logs: dict[str, str] = {}
        self.version = 100
        self.cond = threading.Condition()
        self.closed = False
        self.watch_cap_s: float | None = None
        # Called with (api, deployment) whenever a Deployment is created or its pod template replaced.
        self.scenario: Callable[[FakeKubeAPI, dict[str, Any]], None] = lambda api, deployment: None

    # Object store ------------------------------------------------------------------------------------

    def put(self, resource: str, obj: dict[str, Any], event: str = "MODIFIED") -> dict[str, Any]:
        """Store `obj` with a new resourceVersion and record the watch event."""
        with self.cond:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            obj.setdefault("apiVersion", GROUP[resource])
            obj.setdefault("kind", KINDS[resource])
            self.objects[(resource, obj["metadata"]["name"])] = obj
            self.history.append((self.version, resource, event, json.loads(json.dumps(obj))))
            self.cond.notify_all()
        return obj

    def remove(self, resource: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.pop((resource, name), None)
            if obj is not None:
                self.version += 1
                self.history.append((self.version, resource, "DELETED", obj))
                self.cond.notify_all()
            return obj

    def items(self, resource: str) -> list[dict[str, Any]]:
        with self.cond:
            return [obj for (kind, _), obj in self.objects.items() if kind == resource]

    def requested(self, method: str, resource: str) -> list[tuple[str, str, dict[str, str], Any]]:
        return [r for r in self.requests if r[0] == method and f"/{resource}" in r[1]]

    # Controllers the scenario plays ------------------------------------------------------------------

    def new_pod(self, deployment: dict[str, Any], **status: Any) -> dict[str, Any]:
        """A pod of the Deployment's template, as its ReplicaSet would create it."""
        template = deployment["spec"]["template"]
        name = f"{deployment['metadata']['name']}-5d9f7c-{next(_suffixes)}"
        pod = {
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": dict(template["metadata"]["labels"]),
                "uid": f"uid-{name}",
                "creationTimestamp": _now(),
            },
            "spec": json.loads(json.dumps(template["spec"])),
            "status": {"phase": "Pending", **status},
        }
        return self.put("pods", pod, "ADDED")

    def set_pod(self, pod: dict[str, Any], **status: Any) -> None:
        pod = json.loads(json.dumps(self.objects[("pods", pod["metadata"]["name"])]))
        pod["status"] = status
        self.put("pods", pod)

    def add_event(
        self, about: dict[str, Any], reason: str, message: str, count: int = 1, kind: str = "Pod"
    ) -> None:
        name = f"{about['metadata']['name']}.{next(_suffixes)}"
        involved = {"kind": kind, "name": about["metadata"]["name"], "namespace": NAMESPACE}
        event = {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": count,
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
        }
        self.put("events", event, "ADDED")

    def mark_available(self, deployment_name: str) -> None:
        deployment = json.loads(json.dumps(self.objects[("deployments", deployment_name)]))
        generation = deployment["metadata"]["generation"]
        deployment["status"] = {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
        self.put("deployments", deployment)


_suffixes = (f"{n:05x}" for n in itertools.count(0x1A2B3))


def _handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            url = urlparse(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            api.requests.append((method, url.path, query, body))
            route = ROUTE.match(url.path)
            if route is None or route["ns"] != NAMESPACE:
                return self._send(404, _status(404, "NotFound", f"no route {url.path}"))
            resource, name = route["resource"], route["name"]
            injected = api.faults.get((method, resource))
            if injected:
                code = injected.pop(0)
                return self._send(
                    code, _status(code, "Injected", f"injected fault {code} on {method} {resource}")
                )
            if route["log"]:
                return self._send(200, api.logs.get(name, ""), "text/plain")
            if method == "GET" and name is None:
                if query.get("watch", "").lower() in ("true", "1"):
                    return self._watch(resource, query)
                return self._list(resource, query)
            return getattr(self, f"_{method.lower()}")(resource, name, body)

        def _list(self, resource: str, query: dict[str, str]) -> None:
            with api.cond:
                items = [obj for obj in api.items(resource) if _matches(obj, query)]
                version = str(api.version)
            kind = f"{KINDS[resource]}List"
            self._send(
                200,
                {
                    "kind": kind,
                    "apiVersion": GROUP[resource],
                    "metadata": {"resourceVersion": version},
                    "items": items,
                },
            )

        def _watch(self, resource: str, query: dict[str, str]) -> None:
            since = int(query.get("resourceVersion") or api.version)
            duration = float(query.get("timeoutSeconds", 30))
            if api.watch_cap_s is not None:
                duration = min(duration, api.watch_cap_s)
            deadline = time.monotonic() + duration
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                while True:
                    with api.cond:
                        pending = [
                            entry for entry in api.history if entry[0] > since and entry[1] == resource
                        ]
                        if not pending:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0 or api.closed:
                                break
                            api.cond.wait(min(remaining, 0.2))
                            continue
                    for version, _, event, obj in pending:
                        since = version
                        if _matches(obj, query):
                            line = json.dumps({"type": event, "object": obj}).encode() + b"\n"
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                            self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped watching: it found what it waited for
            self.close_connection = True

        def _get(self, resource: str, name: str, _body: Any) -> None:
            obj = api.objects.get((resource, name))
            if obj is None:
                return self._send(404, _status(404, "NotFound", f'{resource} "{name}" not found'))
            self._send(200, obj)

        def _post(self, resource: str, _name: Any, body: dict[str, Any]) -> None:
            name = body["metadata"]["name"]
            if (resource, name) in api.objects:
                return self._send(409, _status(409, "AlreadyExists", f'{resource} "{name}" already exists'))
            body["metadata"].update(uid=f"uid-{name}", creationTimestamp=_now(), generation=1)
            if resource == "services":
                body["spec"].update(clusterIP="10.96.7.7", clusterIPs=["10.96.7.7"])
            created = api.put(resource, body, "ADDED")
            self._send(201, created)
            if resource == "deployments":
                api.scenario(api, created)

        def _put(self, resource: str, name: str, body: dict[str, Any]) -> None:
            current = api.objects.get((resource, name))
            if current is None:
                return self._send(404, _status(404, "NotFound", f'{resource} "{name}" not found'))
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return self._send(409, _status(409, "Conflict", "the object has been modified"))
            if resource == "services" and body["spec"].get("clusterIP") != current["spec"]["clusterIP"]:
                return self._send(
                    422, _status(422, "Invalid", "spec.clusterIP: Invalid value: field is immutable")
                )
            template_changed = resource == "deployments" and body["spec"] != current["spec"]
            body["metadata"].update(
                uid=current["metadata"]["uid"], creationTimestamp=current["metadata"]["creationTimestamp"]
            )
            body["metadata"]["generation"] = current["metadata"].get("generation", 1) + int(template_changed)
            replaced = api.put(resource, body)
            self._send(200, replaced)
            if template_changed:
                for pod in api.items("pods"):  # Recreate: the old pods go first
                    if (
                        pod["metadata"]["labels"].get("guanaco/submission")
                        == body["metadata"]["labels"]["guanaco/submission"]
                    ):
                        api.remove("pods", pod["metadata"]["name"])
                api.scenario(api, replaced)

        def _delete(self, resource: str, name: str, _body: Any) -> None:
            removed = api.remove(resource, name)
            if removed is None:
                return self._send(404, _status(404, "NotFound", f'{resource} "{name}" not found'))
            if resource == "deployments":  # the garbage collector removes the pods (foreground: first)
                for pod in api.items("pods"):
                    if pod["metadata"]["labels"].get("guanaco/submission") == removed["metadata"][
                        "labels"
                    ].get("guanaco/submission"):
                        api.remove("pods", pod["metadata"]["name"])
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

    return Handler


@pytest.fixture
def kube_api() -> Iterator[tuple[FakeKubeAPI, ApiClient]]:
    """The fake API server on a loopback port and a real ApiClient pointed at it."""
    api = FakeKubeAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    client = ApiClient(configuration)
    yield api, client
    with api.cond:
        api.closed = True
        api.cond.notify_all()
    client.close()
    server.shutdown()
    server.server_close()


def make_deployer(client: ApiClient, **overrides: Any) -> KubernetesDeployer:
    settings = KubernetesSettings(
        namespace=NAMESPACE, image="registry.example/guanaco-inference:1.0", **overrides
    )
    return KubernetesDeployer(settings, api_client=client)


def after(delay_s: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay_s, action)
    timer.daemon = True
    timer.start()


def becomes_ready(delay_s: float) -> Callable[[FakeKubeAPI, dict[str, Any]], None]:
    """Scenario: the pod is scheduled and starts at once, passes /health after `delay_s`."""

    def scenario(api: FakeKubeAPI, deployment: dict[str, Any]) -> None:
        running = {
            "name": "vllm",
            "ready": False,
            "restartCount": 0,
            "image": "x",
            "imageID": "",
            "state": {"running": {"startedAt": _now()}},
        }
        pod = api.new_pod(deployment, phase="Running", containerStatuses=[running])

        def ready() -> None:
            status = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{**running, "ready": True}],
            }
            api.set_pod(pod, **status)
            api.mark_available(deployment["metadata"]["name"])

        after(delay_s, ready)

    return scenario


def unschedulable(api: FakeKubeAPI, deployment: dict[str, Any]) -> None:
    """Scenario: no node has a free GPU; the scheduler says so in a condition and an Event."""
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available."
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    pod = api.new_pod(deployment, conditions=[condition])
    api.add_event(pod, "FailedScheduling", message, count=3)


def crash_loops(api: FakeKubeAPI, deployment: dict[str, Any]) -> None:
    """Scenario: the server exits with code 2 (artifact error) and kubelet backs off restarting it."""
    pod = api.new_pod(deployment, phase="Running")
    name = pod["metadata"]["name"]
    api.logs[name] = (
        "2026-11-02 10:00:00 guanaco-serve INFO downloading config\n"
        "2026-11-02 10:00:01 guanaco-serve ERROR artifact s3://guanaco-models/models/abc/ has no "
        "model.tensors: re-run the tensorize step\n"
    )
    crashed = {
        "name": "vllm",
        "ready": False,
        "restartCount": 2,
        "image": "x",
        "imageID": "",
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 20s restarting failed container=vllm pod={name}",
            }
        },
        "lastState": {
            "terminated": {"exitCode": 2, "reason": "Error", "startedAt": _now(), "finishedAt": _now()}
        },
    }
    after(0.2, lambda: api.set_pod(pod, phase="Running", containerStatuses=[crashed]))


def container_waits(reason: str, message: str) -> Callable[[FakeKubeAPI, dict[str, Any]], None]:
    """Scenario: the pod is scheduled but its container cannot start, for `reason`."""

    def scenario(api: FakeKubeAPI, deployment: dict[str, Any]) -> None:
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        waiting = {"reason": reason, "message": message.format(image=image)}
        status = {
            "name": "vllm",
            "ready": False,
            "restartCount": 0,
            "image": image,
            "imageID": "",
            "state": {"waiting": waiting},
        }
        pod = api.new_pod(deployment)
        after(0.2, lambda: api.set_pod(pod, phase="Pending", containerStatuses=[status]))

    return scenario


def quota_exhausted(api: FakeKubeAPI, deployment: dict[str, Any]) -> None:
    """Scenario: the ReplicaSet cannot create the pod at all; only its Event says why."""
    name = deployment["metadata"]["name"]
    replica_set = {"metadata": {"name": f"{name}-5d9f7c"}}
    api.add_event(
        replica_set,
        "FailedCreate",
        f'Error creating: pods "{name}-5d9f7c-abcde" is forbidden: exceeded quota: gpus, requested: '
        "requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=8, limited: requests.nvidia.com/gpu=8",
        kind="ReplicaSet",
    )


def test_deploy_creates_deployment_and_service_and_returns_once_a_pod_is_ready(kube_api) -> None:
    api, client = kube_api
    api.scenario = becomes_ready(0.5)
    started = time.monotonic()
    deployment = make_deployer(client).deploy(SPEC)
    elapsed_s = time.monotonic() - started
    name = resource_name(SPEC.submission_id)
    assert deployment.endpoint_url == f"http://{name}.{NAMESPACE}.svc.cluster.local:8000/v1"
    assert deployment.details["pod_name"].startswith(name)
    assert deployment.startup_s >= 0.5 and elapsed_s < 5
    assert [r[3]["metadata"]["name"] for r in api.requested("POST", "deployments")] == [name]
    assert len(api.requested("POST", "services")) == 1
    pod_gets = api.requested("GET", "pods")
    # One list, then a watch that saw the pod turn Ready: no polling loop.
    assert [r[2].get("watch") for r in pod_gets] == [None, "True"]
    assert f"guanaco/submission={name}" in pod_gets[1][2]["labelSelector"]


def test_unschedulable_pod_fails_at_the_deadline_naming_the_missing_gpus_and_leaves_nothing(kube_api) -> None:
    api, client = kube_api
    api.scenario = unschedulable
    started = time.monotonic()
    with pytest.raises(DeploymentError) as failure:
        make_deployer(client, startup_deadline_s=2).deploy(SPEC)
    elapsed_s = time.monotonic() - started
    message = str(failure.value)
    first_line = message.splitlines()[0]
    assert "was not ready within 2 s" in first_line
    assert "Insufficient nvidia.com/gpu" in first_line
    assert "GUANACO_K8S_GPU_COUNT" in first_line
    assert "FailedScheduling" in message and "(×3)" in message
    assert 1.9 <= elapsed_s < 8
    assert api.items("deployments") == [] and api.items("services") == []


def test_crash_loop_fails_before_the_deadline_with_the_servers_own_error(kube_api) -> None:
    api, client = kube_api
    api.scenario = crash_loops
    started = time.monotonic()
    with pytest.raises(DeploymentError) as failure:
        make_deployer(client, startup_deadline_s=60).deploy(SPEC)
    assert time.monotonic() - started < 10
    message = str(failure.value)
    assert "failed to start" in message.splitlines()[0]
    assert "CrashLoopBackOff" in message and "last exit code 2" in message
    assert "the server said: artifact s3://guanaco-models/models/abc/ has no model.tensors" in message
    log_requests = [r for r in api.requests if r[1].endswith("/log")]
    assert (
        log_requests and log_requests[0][2]["previous"] == "True" and log_requests[0][2]["tailLines"] == "40"
    )
    assert api.items("deployments") == [] and api.items("services") == []


@pytest.mark.parametrize(
    ("reason", "message", "advice"),
    [
        (
            "ImagePullBackOff",
            'Back-off pulling image "{image}"',
            "GUANACO_K8S_IMAGE=registry.example/guanaco-inference:1.0",
        ),
        ("CreateContainerConfigError", 'secret "guanaco-s3" not found', "create the Secret 'guanaco-s3'"),
    ],
)
def test_a_container_that_cannot_start_fails_fast_with_advice(
    kube_api, reason: str, message: str, advice: str
) -> None:
    api, client = kube_api
    api.scenario = container_waits(reason, message)
    started = time.monotonic()
    with pytest.raises(DeploymentError) as failure:
        make_deployer(client, startup_deadline_s=60).deploy(SPEC)
    assert time.monotonic() - started < 10
    first_line = str(failure.value).splitlines()[0]
    assert "failed to start" in first_line and reason in first_line and advice in first_line
    assert api.items("deployments") == [] and api.items("services") == []


def test_a_pod_that_is_never_created_is_explained_by_its_replica_sets_event(kube_api) -> None:
    api, client = kube_api
    api.scenario = quota_exhausted
    with pytest.raises(DeploymentError) as failure:
        make_deployer(client, startup_deadline_s=1).deploy(SPEC)
    first_line = str(failure.value).splitlines()[0]
    assert "no pod created yet" in first_line and "exceeded quota: gpus" in first_line
    assert "ResourceQuota of namespace 'guanaco-test' is used up" in first_line


def test_deploying_over_existing_objects_replaces_them_instead_of_failing_on_409(kube_api) -> None:
    api, client = kube_api
    api.scenario = becomes_ready(0.1)
    old = DeploymentSpec(SPEC.submission_id, "s3://guanaco-models/models/old/", SPEC.served_model_name)
    deployer = make_deployer(client)
    deployer.deploy(old)
    cluster_ip = api.objects[("services", resource_name(SPEC.submission_id))]["spec"]["clusterIP"]

    deployment = deployer.deploy(SPEC)

    name = resource_name(SPEC.submission_id)
    assert [
        r[0] for r in api.requests if r[1].endswith(f"/deployments/{name}") or r[1].endswith("/deployments")
    ][-2:] == ["GET", "PUT"]
    replaced = api.objects[("deployments", name)]
    assert replaced["metadata"]["annotations"]["guanaco/artifact-uri"] == SPEC.artifact_uri
    assert replaced["metadata"]["generation"] == 2
    assert api.objects[("services", name)]["spec"]["clusterIP"] == cluster_ip
    assert deployment.endpoint_url.endswith(f"{name}.{NAMESPACE}.svc.cluster.local:8000/v1")


def test_redeploying_the_same_spec_returns_the_running_server(kube_api) -> None:
    api, client = kube_api
    api.scenario = becomes_ready(0.1)
    deployer = make_deployer(client)
    first = deployer.deploy(SPEC)
    api.scenario = lambda api, deployment: pytest.fail("an unchanged spec must not start a new pod")
    second = deployer.deploy(SPEC)
    assert second.details["pod_name"] == first.details["pod_name"]
    assert len(api.items("pods")) == 1


def test_deploy_waits_for_a_terminating_deployment_of_the_same_submission(kube_api) -> None:
    api, client = kube_api
    api.scenario = becomes_ready(0.1)
    deployer = make_deployer(client)
    deployer.deploy(SPEC)
    name = resource_name(SPEC.submission_id)
    terminating = json.loads(json.dumps(api.objects[("deployments", name)]))
    terminating["metadata"]["deletionTimestamp"] = _now()
    api.put("deployments", terminating)
    after(0.5, lambda: api.remove("deployments", name))

    deployer.deploy(SPEC)

    assert "deletionTimestamp" not in api.objects[("deployments", name)]["metadata"]
    assert any(
        r[2].get("fieldSelector") == f"metadata.name={name}" and r[2].get("watch") for r in api.requests
    )


def test_the_wait_resumes_when_the_server_ends_a_watch_early(kube_api) -> None:
    api, client = kube_api
    api.watch_cap_s = 0.3
    api.scenario = becomes_ready(1.0)
    deployment = make_deployer(client, startup_deadline_s=10).deploy(SPEC)
    assert deployment.startup_s >= 1.0
    assert len([r for r in api.requested("GET", "pods") if r[2].get("watch")]) >= 2


def test_teardown_deletes_both_objects_in_the_foreground_and_tolerates_404(kube_api) -> None:
    api, client = kube_api
    api.scenario = becomes_ready(0.1)
    deployer = make_deployer(client)
    assert deployer.teardown(SPEC.submission_id) is False
    deployer.deploy(SPEC)

    assert deployer.teardown(SPEC.submission_id) is True

    deletes = [r for r in api.requests if r[0] == "DELETE"]
    assert {r[1].rsplit("/", 2)[-2] for r in deletes[-2:]} == {"deployments", "services"}
    assert all(r[3]["propagationPolicy"] == "Foreground" for r in deletes[-2:])
    assert api.items("deployments") == api.items("services") == api.items("pods") == []
    assert deployer.teardown(SPEC.submission_id) is False


def test_get_and_list_find_a_ready_deployment_by_its_raw_submission_id(kube_api) -> None:
    api, client = kube_api
    api.scenario = becomes_ready(0.1)
    deployer = make_deployer(client)
    assert deployer.get(SPEC.submission_id) is None
    deployer.deploy(SPEC)
    found = deployer.get(SPEC.submission_id)
    assert found is not None and found.endpoint_url.endswith(":8000/v1")
    assert deployer.list_submission_ids() == [SPEC.submission_id]
    assert deployer.teardown_all() == 1
    assert deployer.list_submission_ids() == []


def test_forbidden_create_says_which_rbac_to_apply_and_creates_nothing(kube_api) -> None:
    api, client = kube_api
    api.faults[("POST", "deployments")] = [403]
    with pytest.raises(DeploymentError, match=r"HTTP 403.*deploy/k8s/rbac.yaml"):
        make_deployer(client).deploy(SPEC)
    assert api.items("deployments") == [] and api.items("services") == []


def test_a_failed_service_create_removes_the_deployment_it_just_created(kube_api) -> None:
    api, client = kube_api
    api.faults[("POST", "services")] = [500]
    with pytest.raises(DeploymentError, match="HTTP 500"):
        make_deployer(client).deploy(SPEC)
    assert api.items("deployments") == []
