"""Deactivate, tear down and redeploy: the service records a request, this sensor runs a job for it."""

from dagster import (
    Config,
    DefaultSensorStatus,
    OpExecutionContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    job,
    op,
    sensor,
)

from guanaco_dagster.submissions.lifecycle_requests import carry_out_request, open_requests
from resources import DeployerResource, StoreResource


class LifecycleRequestConfig(Config):
    request_id: int


@op(description="Stop the submission's server and/or change its status, as the request asks.")
def carry_out_lifecycle_request(
    context: OpExecutionContext,
    config: LifecycleRequestConfig,
    store: StoreResource,
    deployer: DeployerResource,
) -> str:
    outcome = carry_out_request(store.store, deployer.get_deployer(), config.request_id)
    context.log.info(f"lifecycle request {config.request_id}: {outcome}")
    return outcome


@job(
    description="Carry out one deactivate, teardown or redeploy request.", tags={"guanaco/kind": "lifecycle"}
)
def lifecycle_job() -> None:
    carry_out_lifecycle_request()


@sensor(
    job=lifecycle_job,
    minimum_interval_seconds=1,
    default_status=DefaultSensorStatus.RUNNING,
    description="Open lifecycle requests → one run each (run_key = request id).",
)
def lifecycle_sensor(context: SensorEvaluationContext, store: StoreResource) -> SensorResult | SkipReason:
    with store.store.session() as session:
        requests = [(r.id, r.submission_id, r.action) for r in open_requests(session)]
    if not requests:
        return SkipReason("no lifecycle requests")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"lifecycle-{request_id}",
                run_config={"ops": {"carry_out_lifecycle_request": {"config": {"request_id": request_id}}}},
                tags={"guanaco/submission": submission_id, "guanaco/action": action},
            )
            for request_id, submission_id, action in requests
        ]
    )
