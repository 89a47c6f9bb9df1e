"""`latency_report`: a concurrent stress test of the deployment, held to the SLO by a blocking check.

The check blocks `feedback_summary`, which runs in the same job: a model that misses the SLO never gets a
feedback summary (it never reaches users either: it is failed and torn down).
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.live_deployment import live_deployment
from assets.metadata import latency_metadata, slo_check_metadata
from assets.partitions import submissions_partitions
from assets.stage import submission_stage
from guanaco_dagster.stages.stress import evaluate_slo, run_stress_test
from guanaco_dagster.store.models import LatencyReportRow
from guanaco_dagster.submissions.deployment_wait import DeploymentNotSucceeded, wait_for_deployment
from guanaco_dagster.submissions.failure import fail_submission
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import transition
from resources import DeployerResource, PipelineConfigResource, S3CacheResource, StoreResource
from resources.leftovers import leftovers_of

SLO_CHECK = "latency_within_slo"
# Past the deployer's own timeout, after which the deployment step fails by itself.
DEPLOYMENT_WAIT_MARGIN_S = 60.0


@asset(
    partitions_def=submissions_partitions,
    deps=[live_deployment],
    group_name="submission_pipeline",
    kinds={"python"},
    check_specs=[
        AssetCheckSpec(
            SLO_CHECK,
            asset="latency_report",
            blocking=True,
            partitions_def=submissions_partitions,
            description="p95 latency, p95 time to first token and error rate within the SLO; blocks "
            "feedback_summary.",
        )
    ],
)
def latency_report(
    context: AssetExecutionContext,
    store: StoreResource,
    deployer: DeployerResource,
    s3_cache: S3CacheResource,
    pipeline: PipelineConfigResource,
) -> MaterializeResult:
    """Stress the endpoint; within SLO the model is `deployed`, otherwise it is torn down and `failed`."""
    leftovers = leftovers_of(deployer=deployer, s3_cache=s3_cache)
    # This run may be launched as the deployment starts (assets/live_deployment.py).
    try:
        waited_s = wait_for_deployment(
            store.store,
            context.partition_key,
            timeout_s=deployer.deployment_timeout_s() + DEPLOYMENT_WAIT_MARGIN_S,
            on_wait=lambda: context.log.info("waiting for the deployment to answer its health check"),
        )
    except DeploymentNotSucceeded as error:
        # The deployment's own step already failed the submission with its reason.
        raise Failure(description=str(error), allow_retries=False) from error
    with submission_stage(context, store.store, Status.STRESS_TESTING, leftovers) as stage:
        handoff = stage.handoff
        report = run_stress_test(
            handoff.endpoint_url, handoff.served_model_name or handoff.submission_id, pipeline
        )
        verdict = evaluate_slo(report, pipeline)
        with store.store.session() as session:
            session.merge(
                LatencyReportRow(
                    submission_id=stage.submission_id, passed=verdict.passed, report=report.to_dict()
                )
            )
    if verdict.passed:
        with store.store.session() as session:
            transition(session, stage.submission_id, Status.DEPLOYED, message="stress test within SLO")
    else:
        # A server that no longer answers its health check crashed or hung: say so, not just the numbers.
        gone = deployer.get_deployer().get(stage.submission_id) is None
        reason = f"latency SLO not met: {verdict.reason()}"
        if gone:
            reason += "; the model server stopped answering during the test (crashed or hung): check its logs"
        fail_submission(store.store, stage.submission_id, reason, leftovers)
    return MaterializeResult(
        metadata={
            **latency_metadata(report, verdict, pipeline),
            "waited_for_deployment_s": MetadataValue.float(round(waited_s, 2)),
        },
        check_results=[
            AssetCheckResult(
                check_name=SLO_CHECK,
                passed=verdict.passed,
                severity=AssetCheckSeverity.ERROR,
                description=verdict.reason(),
                metadata=slo_check_metadata(report, verdict),
            )
        ],
    )
