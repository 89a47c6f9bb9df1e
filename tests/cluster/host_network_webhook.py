"""A mutating admission webhook that puts model-server pods on the host's network, bound to loopback.

The one-node test cluster has no pod network (no CNI, no kube-proxy: nothing that would need bridges, NAT or
IP forwarding on a shared machine), so a pod in its own network namespace could be reached by nobody, and
the kubelet's probes would have no pod IP to call. This webhook plays the part a cluster policy (Kyverno,
Gatekeeper) plays elsewhere: it changes the pods the KubernetesDeployer creates, not the deployer. It sets
`hostNetwork: true` and makes the server listen on 127.0.0.1 instead of 0.0.0.0.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from guanaco_dagster.deployment.kubernetes_manifests import COMPONENT

WEBHOOK_NAME = "guanaco-test-host-network"


def host_network_patch(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON patch: host networking, and `--host 127.0.0.1` where a container's args say `--host 0.0.0.0`."""
    patch: list[dict[str, Any]] = [{"op": "add", "path": "/spec/hostNetwork", "value": True}]
    for index, container in enumerate(pod["spec"]["containers"]):
        args = list(container.get("args") or [])
        for position in range(len(args) - 1):
            if args[position] == "--host" and args[position + 1] == "0.0.0.0":
                args[position + 1] = "127.0.0.1"
                patch.append({"op": "replace", "path": f"/spec/containers/{index}/args", "value": args})
                break
    return patch


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        patch = host_network_patch(request["object"])
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": request["uid"],
                    "allowed": True,
                    "patchType": "JSONPatch",
                    "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet: pytest shows failures, not every admission call."""


class HostNetworkWebhook:
    """Serve the webhook on 127.0.0.1:`port` over TLS and register it for model-server pods; undo on exit."""

    def __init__(self, admission_api: Any, pki_dir: Path, port: int) -> None:
        self.admission_api = admission_api
        self.pki_dir = Path(pki_dir)
        self.port = port
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki_dir / "loopback-serving.crt", self.pki_dir / "loopback-serving.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def configuration(self) -> dict[str, Any]:
        """The MutatingWebhookConfiguration: pod creations labelled as model servers, failing closed."""
        ca_bundle = base64.b64encode((self.pki_dir / "ca.crt").read_bytes()).decode()
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_NAME},
            "webhooks": [
                {
                    "name": "host-network.guanaco.test",
                    "clientConfig": {"url": f"https://127.0.0.1:{self.port}/mutate", "caBundle": ca_bundle},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ],
                    "objectSelector": {"matchLabels": {"app.kubernetes.io/component": COMPONENT}},
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 10,
                }
            ],
        }

    def __enter__(self) -> HostNetworkWebhook:
        self.thread.start()
        self.admission_api.create_mutating_webhook_configuration(self.configuration())
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.admission_api.delete_mutating_webhook_configuration(WEBHOOK_NAME)
        finally:
            self.server.shutdown()
            self.server.server_close()
