"""Deploy each submission as a vLLM Deployment + Service on Kubernetes, with the official Python client.

`deploy` creates (or, on 409, replaces) the objects built by `kubernetes_manifests`, then watches the
submission's pods until one that runs exactly this spec is Ready, within the startup deadline. On a
failure or at the deadline it reads the pods, their Events and the server's last log lines into a
`DeploymentError` that says what to change, and deletes what it created. Every call is idempotent.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, V1DeleteOptions
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from guanaco_dagster.deployment.base import Deployer, Deployment, DeploymentError, DeploymentSpec
from guanaco_dagster.deployment.kubernetes_config import KubernetesConfig
from guanaco_dagster.deployment.kubernetes_diagnosis import (
    FATAL,
    READY,
    api_error_message,
    assess_pod,
    describe_pod_problem,
    hint_for,
)
from guanaco_dagster.deployment.kubernetes_manifests import (
    CONTAINER_NAME,
    MANAGED_SELECTOR,
    SPEC_HASH_LABEL,
    SUBMISSION_ID_ANNOTATION,
    SUBMISSION_LABEL,
    build_deployment,
    build_service,
    endpoint_url,
    resource_name,
    spec_hash,
)
from guanaco_dagster.deployment.server_log import failure_reason

__all__ = [
    "KubernetesDeployer",
    "assess_pod",
    "build_deployment",
    "build_service",
    "hint_for",
    "load_api_client",
    "resource_name",
]

LOG_TAIL_LINES = 40
EVENTS_SHOWN = 12


def load_api_client(settings: KubernetesConfig) -> ApiClient:
    """An ApiClient from the in-cluster service account or a kubeconfig, as the settings say."""
    configuration = kubernetes.client.Configuration()
    in_cluster = settings.in_cluster
    if in_cluster is None:
        in_cluster = not settings.kubeconfig and "KUBERNETES_SERVICE_HOST" in os.environ
    try:
        if in_cluster:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=settings.kubeconfig, client_configuration=configuration
            )
    except (kubernetes.config.ConfigException, OSError) as error:
        source = (
            "the pod's service account" if in_cluster else (settings.kubeconfig or "the default kubeconfig")
        )
        raise DeploymentError(
            f"cannot configure the Kubernetes client from {source}: {str(error).rstrip('.')}. "
            "Set GUANACO_K8S_KUBECONFIG to a kubeconfig file, or run the platform in a pod with a "
            "service account."
        ) from error
    return ApiClient(configuration)


class _NotReady(Exception):
    """The wait ended without a ready pod: `fatal` (a stuck state) or at the deadline."""

    def __init__(self, fatal: bool, reason: str) -> None:
        super().__init__(reason)
        self.fatal = fatal
        self.reason = reason


class KubernetesDeployer(Deployer):
    """One vLLM Deployment + ClusterIP Service per submission, in `settings.namespace`."""

    def __init__(self, settings: KubernetesConfig, api_client: ApiClient | None = None) -> None:
        self.settings = settings
        self._given_api_client = api_client

    @cached_property
    def api_client(self) -> ApiClient:
        """The client, configured on first use (so building the resource never needs a cluster)."""
        return self._given_api_client or load_api_client(self.settings)

    @cached_property
    def apps(self) -> AppsV1Api:
        return AppsV1Api(self.api_client)

    @cached_property
    def core(self) -> CoreV1Api:
        return CoreV1Api(self.api_client)

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    # Deployer --------------------------------------------------------------------------------------

    def deploy(self, spec: DeploymentSpec) -> Deployment:
        """Create or update the submission's Deployment and Service, then wait until a pod is Ready."""
        started = time.monotonic()
        name = resource_name(spec.submission_id)
        try:
            self._apply("Deployment", build_deployment(spec, self.settings))
            self._apply("Service", build_service(spec, self.settings))
        except ApiException as error:
            self._teardown_quietly(spec.submission_id)
            raise DeploymentError(
                f"model server for {spec.submission_id!r}: "
                + api_error_message(error, "create Deployments and Services", self.settings)
            ) from error
        except DeploymentError:
            self._teardown_quietly(spec.submission_id)
            raise
        try:
            pod = self._wait_until_ready(spec, deadline=started + self.settings.startup_deadline_s)
        except (_NotReady, ApiException, Urllib3Error) as error:
            message = self._failure_message(spec, error)
            self._teardown_quietly(spec.submission_id)
            raise DeploymentError(message) from None
        return Deployment(
            submission_id=spec.submission_id,
            endpoint_url=endpoint_url(spec.submission_id, self.settings),
            startup_s=round(time.monotonic() - started, 3),
            details=self._details(
                spec.submission_id, name, pod_name=pod.metadata.name, node=pod.spec.node_name
            ),
        )

    def teardown(self, submission_id: str) -> bool:
        """Delete the submission's Deployment (foreground: its pods go first) and Service; 404s are fine."""
        name = resource_name(submission_id)
        options = V1DeleteOptions(propagation_policy="Foreground")
        deleted = False
        for kind, delete in (
            ("Deployment", self.apps.delete_namespaced_deployment),
            ("Service", self.core.delete_namespaced_service),
        ):
            try:
                delete(name, self.namespace, body=options)
                deleted = True
            except ApiException as error:
                if error.status != 404:
                    raise DeploymentError(
                        f"cannot delete {kind} {name} of {submission_id!r}: "
                        + api_error_message(error, f"delete {kind}s", self.settings)
                    ) from error
        return deleted

    def get(self, submission_id: str) -> Deployment | None:
        """The submission's deployment when its Deployment reports an available, up-to-date replica."""
        name = resource_name(submission_id)
        try:
            found = self.apps.read_namespaced_deployment(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        status = found.status
        if status is None or found.metadata.deletion_timestamp is not None:
            return None
        up_to_date = (status.observed_generation or 0) >= (found.metadata.generation or 0)
        if not (up_to_date and (status.updated_replicas or 0) >= 1 and (status.available_replicas or 0) >= 1):
            return None
        return Deployment(
            submission_id=submission_id,
            endpoint_url=endpoint_url(submission_id, self.settings),
            startup_s=0.0,
            details=self._details(submission_id, name),
        )

    def list_submission_ids(self) -> list[str]:
        """Submissions with a Deployment or a Service of ours in the namespace (by label), sorted."""
        ids: set[str] = set()
        for list_objects in (self.apps.list_namespaced_deployment, self.core.list_namespaced_service):
            for item in list_objects(self.namespace, label_selector=MANAGED_SELECTOR).items:
                submission_id = (item.metadata.annotations or {}).get(SUBMISSION_ID_ANNOTATION)
                if submission_id:
                    ids.add(submission_id)
        return sorted(ids)

    # Create or replace -----------------------------------------------------------------------------

    def _api(
        self, kind: str
    ) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        """create, read, replace and list functions for `kind`."""
        if kind == "Deployment":
            return (
                self.apps.create_namespaced_deployment,
                self.apps.read_namespaced_deployment,
                self.apps.replace_namespaced_deployment,
                self.apps.list_namespaced_deployment,
            )
        return (
            self.core.create_namespaced_service,
            self.core.read_namespaced_service,
            self.core.replace_namespaced_service,
            self.core.list_namespaced_service,
        )

    def _apply(self, kind: str, body: dict[str, Any]) -> Any:
        """Create `body`; when it exists (409), replace it at the resourceVersion read back."""
        create, read, replace, _list = self._api(kind)
        name = body["metadata"]["name"]
        for _attempt in range(5):
            try:
                return create(self.namespace, body)
            except ApiException as error:
                if error.status != 409:
                    raise
            try:
                existing = read(name, self.namespace)
            except ApiException as error:
                if error.status == 404:  # deleted between our create and read: create again
                    continue
                raise
            if existing.metadata.deletion_timestamp is not None:
                # A teardown is still removing it (foreground deletion waits for the pods): let it finish.
                self._wait_until_deleted(kind, name)
                continue
            update = copy.deepcopy(body)
            update["metadata"]["resourceVersion"] = existing.metadata.resource_version
            if kind == "Service":
                # A Service's cluster IP is immutable; carry the allocated one over.
                update["spec"]["clusterIP"] = existing.spec.cluster_ip
                if existing.spec.cluster_ips:
                    update["spec"]["clusterIPs"] = existing.spec.cluster_ips
            try:
                return replace(name, self.namespace, update)
            except ApiException as error:
                if error.status not in (404, 409):  # 409: changed since we read it; 404: just deleted
                    raise
        raise DeploymentError(
            f"{kind} {name} in namespace {self.namespace!r} kept changing while Guanaco updated it: is "
            "another deploy of the same submission running?"
        )

    def _wait_until_deleted(self, kind: str, name: str) -> None:
        """Watch until the named object is gone, for at most `deletion_timeout_s`."""
        _create, _read, _replace, list_objects = self._api(kind)
        deadline = time.monotonic() + self.settings.deletion_timeout_s
        selector = f"metadata.name={name}"
        while True:
            listed = list_objects(self.namespace, field_selector=selector)
            if not listed.items:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeploymentError(
                    f"{kind} {name} in namespace {self.namespace!r} is still terminating after "
                    f"{self.settings.deletion_timeout_s:.0f} s: check its finalizers and pods "
                    f"(kubectl -n {self.namespace} describe {kind.lower()} {name})"
                )
            for event in self._watch(
                list_objects, listed.metadata.resource_version, remaining, field_selector=selector
            ):
                if event["type"] == "DELETED":
                    return

    # Waiting ---------------------------------------------------------------------------------------

    def _watch(
        self,
        list_objects: Callable[..., Any],
        resource_version: str | None,
        remaining_s: float,
        **selectors: str,
    ) -> Iterator[dict[str, Any]]:
        """Watch events after `resource_version` until the server ends the stream (≈ `remaining_s`)."""
        stream = kubernetes.watch.Watch().stream(
            list_objects,
            self.namespace,
            resource_version=resource_version,
            timeout_seconds=max(1, math.ceil(remaining_s)),
            # A read timeout past the server's own, so a silent connection cannot hang us forever.
            _request_timeout=(10, remaining_s + 30),
            **selectors,
        )
        try:
            yield from stream
        except Urllib3Error:
            return  # a broken stream: the caller lists again and resumes
        finally:
            stream.close()

    def _pod_states(self, selector: str, deadline: float) -> Iterator[Any]:
        """Every state of the selected pods until the deadline: the current list, then watch events.

        When a watch stream ends early (server timeout, broken connection) it lists again and resumes.
        """
        while True:
            listed = self.core.list_namespaced_pod(self.namespace, label_selector=selector)
            yield from listed.items
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            resource_version = listed.metadata.resource_version
            for event in self._watch(
                self.core.list_namespaced_pod, resource_version, remaining, label_selector=selector
            ):
                if event["type"] in ("ADDED", "MODIFIED"):
                    yield event["object"]
                if time.monotonic() >= deadline:
                    return

    def _wait_until_ready(self, spec: DeploymentSpec, deadline: float) -> Any:
        """Watch the pods running this exact spec until one is Ready; raise _NotReady when none will be."""
        selector = (
            f"{SUBMISSION_LABEL}={resource_name(spec.submission_id)},"
            f"{SPEC_HASH_LABEL}={spec_hash(spec, self.settings)}"
        )
        latest = "no pod created yet"
        with contextlib.closing(self._pod_states(selector, deadline)) as states:
            for pod in states:
                verdict = assess_pod(pod, self.settings.fail_fast)
                if verdict.state == READY:
                    return pod
                if verdict.state == FATAL:
                    raise _NotReady(fatal=True, reason=f"pod {pod.metadata.name}: {verdict.reason}")
                latest = f"pod {pod.metadata.name}: {verdict.reason}"
        raise _NotReady(fatal=False, reason=latest)

    # Diagnosis -------------------------------------------------------------------------------------

    def _failure_message(self, spec: DeploymentSpec, error: Exception) -> str:
        """Headline (cause + what to do) first, then pods, Events and log lines."""
        name = resource_name(spec.submission_id)
        where = f"model server for {spec.submission_id!r} (Deployment {name} in namespace {self.namespace!r})"
        if isinstance(error, _NotReady):
            what = (
                "failed to start"
                if error.fatal
                else f"was not ready within {self.settings.startup_deadline_s} s"
            )
            cause = error.reason
        elif isinstance(error, ApiException):
            what, cause = (
                "could not be watched",
                api_error_message(error, "list and watch pods", self.settings),
            )
        else:
            what, cause = "could not be watched", f"the connection to the API server broke: {error}"
        details = self._collect_details(name)
        events = details["events"]
        logs = details["logs"]
        server_said = failure_reason(logs)
        if server_said:
            cause += f"; the server said: {server_said}"
        if cause.endswith("no pod created yet") and events:
            cause += f" ({events[-1]})"
        hint = hint_for("\n".join([cause, *events]), self.settings)
        lines = [f"{where} {what}: {cause.rstrip('. ')}" + (f". To fix: {hint}." if hint else ".")]
        lines += [line for line in details["pods"] if line not in cause]
        if events:
            lines += ["Events:", *(f"  {event}" for event in events)]
        if logs:
            lines += [details["logs_title"], *(f"  {line}" for line in logs.splitlines())]
        return "\n".join(lines)

    def _collect_details(self, name: str) -> dict[str, Any]:
        """Pods, recent Events of the Deployment/ReplicaSet/pods, and the server's last log lines."""
        details: dict[str, Any] = {"pods": [], "events": [], "logs": "", "logs_title": ""}
        with contextlib.suppress(ApiException, Urllib3Error):
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"{SUBMISSION_LABEL}={name}"
            ).items
            for pod in pods:
                details["pods"].append(f"pod {pod.metadata.name}: {describe_pod_problem(pod)}")
            details["logs"], details["logs_title"] = self._last_log_lines(pods)
        with contextlib.suppress(ApiException, Urllib3Error):
            events = [
                event
                for event in self.core.list_namespaced_event(self.namespace).items
                # ReplicaSets and pods are named <deployment>-<hash>[-<suffix>].
                if event.involved_object and (event.involved_object.name or "").startswith(name)
            ]
            events.sort(key=lambda event: str(event.last_timestamp or event.event_time or ""))
            details["events"] = [
                f"{event.type} {event.reason} {event.involved_object.kind}/{event.involved_object.name}: "
                f"{(event.message or '').strip()}" + (f" (×{event.count})" if (event.count or 1) > 1 else "")
                for event in events[-EVENTS_SHOWN:]
            ]
        return details

    def _last_log_lines(self, pods: list[Any]) -> tuple[str, str]:
        """The server container's last lines: its previous run's when it restarted, else the current one's."""
        for pod in pods:
            statuses = (pod.status.container_statuses or []) if pod.status else []
            for container in statuses:
                terminated = container.state.terminated if container.state else None
                if container.name != CONTAINER_NAME or not (container.restart_count or terminated):
                    continue
                previous = bool(container.restart_count)
                with contextlib.suppress(ApiException, Urllib3Error):
                    # Raw bytes: the client's own str deserialisation of logs yields "b'...'" reprs.
                    response = self.core.read_namespaced_pod_log(
                        pod.metadata.name,
                        self.namespace,
                        container=CONTAINER_NAME,
                        previous=previous,
                        tail_lines=LOG_TAIL_LINES,
                        _preload_content=False,
                    )
                    text = response.data.decode("utf-8", errors="replace")
                    run = "previous run" if previous else "current run"
                    return text, f"Last log lines of {pod.metadata.name}/{CONTAINER_NAME} ({run}):"
        return "", ""

    def _teardown_quietly(self, submission_id: str) -> None:
        """Delete what a failed deploy created; a failure here must not hide the deploy's own error."""
        with contextlib.suppress(DeploymentError, ApiException, Urllib3Error):
            self.teardown(submission_id)

    def _details(self, submission_id: str, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "deployment": name,
            "service": name,
            "image": self.settings.image,
            "gpu_count": self.settings.gpu_count,
            **{key: value for key, value in extra.items() if value is not None},
        }
