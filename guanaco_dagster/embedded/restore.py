"""After a platform (re)start, bring every `deployed` model back to serving without developer action.

A server that is still alive and healthy is re-adopted; otherwise the model is redeployed from the S3
cache through the deployer, which waits for health and a one-token completion. This runs in the platform
process rather than as a Dagster run: the artifact already passed its stress test, so nothing needs the Hub,
tensorizing or a new trip through `pending`; the servers watch the platform process; and it must not wait
for a daemon that may itself be restarting. Each outcome is a status event the developer sees in
`guanaco logs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from guanaco_dagster.deployment.base import Deployer, Deployment, DeploymentError, DeploymentSpec
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Submission, SubmissionEvent
from guanaco_dagster.submissions.failure import Leftovers, fail_submission
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import get_submission

REDEPLOY_ATTEMPTS = 2


@dataclass(frozen=True)
class DeployedModel:
    submission_id: str
    artifact_uri: str | None
    served_model_name: str


def deployed_models(store: Store) -> list[DeployedModel]:
    """Every submission whose status is `deployed`."""
    with store.session() as session:
        rows = session.scalars(select(Submission).where(Submission.status == Status.DEPLOYED)).all()
        return [DeployedModel(s.id, s.artifact_uri, s.served_model_name or s.id) for s in rows]


def forget_endpoints(store: Store, submission_ids: list[str]) -> None:
    """Take models out of routing (their servers stopped) while they stay `deployed`."""
    with store.session() as session:
        for submission_id in submission_ids:
            get_submission(session, submission_id).endpoint_url = None


def _serve_again(
    store: Store, deployer: Deployer, model: DeployedModel, deployment: Deployment, how: str
) -> str:
    with store.session() as session:
        submission = get_submission(session, model.submission_id, for_update=True)
        if submission.status != Status.DEPLOYED:
            # Deactivated or torn down while its server was starting: it must not serve.
            deployer.teardown(model.submission_id)
            return f"not restored: it became '{submission.status}' meanwhile"
        submission.endpoint_url = deployment.endpoint_url
        session.add(SubmissionEvent(submission_id=model.submission_id, status=Status.DEPLOYED, message=how))
    return how


def _never() -> bool:
    return False


def _not_deployed(submission: Submission) -> bool:
    # Deactivated or torn down meanwhile: nothing of it to fail.
    return submission.status != Status.DEPLOYED


def restore_model(
    store: Store,
    deployer: Deployer,
    model: DeployedModel,
    stopping: Callable[[], bool] = _never,
    max_model_len: Callable[[str], int | None] = lambda _uri: None,
) -> str:
    """Re-adopt or redeploy one model; fail it with the cause when its server cannot start. The outcome.

    A start cut short because the platform is stopping fails nothing: the next start tries again.
    `max_model_len(artifact_uri)` is the context length to serve it with (None: the deployer's own).
    """
    leftovers = Leftovers.of(deployer)
    deployment = deployer.get(model.submission_id)
    if deployment is not None:
        return _serve_again(store, deployer, model, deployment, "server re-adopted after a platform restart")
    forget_endpoints(store, [model.submission_id])
    if not model.artifact_uri:
        reason = "no cached artifact to restart from; resubmit the model"
        fail_submission(store, model.submission_id, reason, leftovers, unless=_not_deployed)
        return "failed: no cached artifact"
    spec = DeploymentSpec(
        model.submission_id,
        model.artifact_uri,
        model.served_model_name,
        max_model_len=max_model_len(model.artifact_uri),
    )
    error: DeploymentError | None = None
    for _attempt in range(REDEPLOY_ATTEMPTS):
        try:
            deployment = deployer.deploy(spec)
        except DeploymentError as failure:
            if stopping():
                return "interrupted: the platform is stopping"
            error = failure
            continue
        return _serve_again(
            store,
            deployer,
            model,
            deployment,
            f"server restarted from the S3 cache after a platform restart ({deployment.startup_s:.0f} s)",
        )
    cause = str(error).splitlines()[0] if error else "unknown cause"
    reason = (
        f"{cause} (while restarting its server after a platform restart); "
        f"try `guanaco redeploy {model.submission_id}`"
    )
    fail_submission(store, model.submission_id, reason, leftovers, unless=_not_deployed)
    return f"failed: {cause}"


def restore_deployed_models(
    store: Store,
    deployer: Deployer,
    report: Callable[[str], None] = lambda _message: None,
    stopping: Callable[[], bool] = _never,
    max_model_len: Callable[[str], int | None] = lambda _uri: None,
) -> dict[str, str]:
    """Bring every `deployed` model back to serving, one after another; {submission id: outcome}."""
    outcomes = {}
    for model in deployed_models(store):
        if stopping():
            break
        outcomes[model.submission_id] = restore_model(store, deployer, model, stopping, max_model_len)
        report(f"{model.submission_id}: {outcomes[model.submission_id]}")
    return outcomes
