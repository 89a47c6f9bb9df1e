"""`latency_report`: a concurrent stress test of the deployment, held to the SLO by a blocking check.

The check blocks `feedback_summary`, which runs in the same job: a model that misses the SLO never gets a
feedback summary (it never reaches users either: it is failed and torn down).
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    asset,
)

from assets.live_deployment import live_deployment
from assets.metadata import latency_metadata, slo_check_metadata
from assets.partitions import submissions_partitions
from assets.stage import submission_stage
from guanaco_dagster.stages.stress import evaluate_slo, run_stress_test
from guanaco_dagster.store.models import LatencyReportRow
from guanaco_dagster.submissions.failure import fail_submission
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import transition
from resources import DeployerResource, PipelineConfigResource, S3CacheResource, StoreResource
from resources.leftovers import leftovers_of

SLO_CHECK = "latency_within_slo"


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
        metadata=latency_metadata(report, verdict, pipeline),
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
