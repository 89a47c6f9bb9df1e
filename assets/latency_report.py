"""`latency_report`: a concurrent stress test of the deployment, held to the SLO by an asset check."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.live_deployment import live_deployment
from assets.partitions import submissions_partitions
from assets.stage import markdown_table, submission_stage
from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.domain.submissions import get_submission, mark_failed, transition
from guanaco_dagster.pipeline.stress import evaluate_slo, run_stress_test
from guanaco_dagster.store.models import LatencyReportRow
from resources import DeployerResource, PipelineConfigResource, StoreResource

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
            description="p95 latency, p95 time to first token and error rate within the SLO.",
        )
    ],
)
def latency_report(
    context: AssetExecutionContext,
    store: StoreResource,
    deployer: DeployerResource,
    pipeline: PipelineConfigResource,
) -> MaterializeResult:
    """Stress the endpoint; within SLO the model is `deployed`, otherwise it is torn down and `failed`."""
    with submission_stage(context, store.store, Status.STRESS_TESTING) as submission_id:
        with store.store.session() as session:
            submission = get_submission(session, submission_id)
            endpoint, model = submission.endpoint_url, submission.served_model_name or submission_id
        try:
            report = run_stress_test(endpoint, model, pipeline.stress)
        except BaseException:
            deployer.get_deployer().teardown(submission_id)  # a server we cannot measure is not kept
            raise
        verdict = evaluate_slo(report, pipeline.slo)
        with store.store.session() as session:
            session.merge(
                LatencyReportRow(submission_id=submission_id, passed=verdict.passed, report=report.to_dict())
            )
    if verdict.passed:
        with store.store.session() as session:
            transition(session, submission_id, Status.DEPLOYED, message="stress test within SLO")
    else:
        server = deployer.get_deployer()
        # A server that no longer answers its health check crashed or hung: say so, not just the numbers.
        gone = server.get(submission_id) is None
        server.teardown(submission_id)
        reason = f"latency SLO not met: {verdict.reason()}"
        if gone:
            reason += "; the model server stopped answering during the test (crashed or hung): check its logs"
        with store.store.session() as session:
            mark_failed(session, submission_id, reason)
    slo = pipeline.slo
    return MaterializeResult(
        metadata={
            "latency_p50_s": MetadataValue.float(round(report.latency_p50_s, 3)),
            "latency_p95_s": MetadataValue.float(round(report.latency_p95_s, 3)),
            "latency_p99_s": MetadataValue.float(round(report.latency_p99_s, 3)),
            "ttft_p95_s": MetadataValue.float(round(report.ttft_p95_s, 3)),
            "tokens_per_s": MetadataValue.float(round(report.tokens_per_s, 1)),
            "error_rate": MetadataValue.float(report.error_rate),
            "report": markdown_table(
                {
                    "requests / concurrency": f"{report.requests} / {report.concurrency}",
                    "latency p50 / p95 / p99": f"{report.latency_p50_s:.3f} / {report.latency_p95_s:.3f} / "
                    f"{report.latency_p99_s:.3f} s (SLO p95 ≤ {slo.latency_p95_s} s)",
                    "time to first token p50 / p95": f"{report.ttft_p50_s:.3f} / {report.ttft_p95_s:.3f} s "
                    f"(SLO p95 ≤ {slo.ttft_p95_s} s)",
                    "output tokens / throughput": f"{report.output_tokens} / {report.tokens_per_s:.1f} tok/s",
                    "errors": f"{report.errors} ({report.error_rate:.1%}, SLO ≤ {slo.max_error_rate:.1%})",
                    "verdict": "deployed" if verdict.passed else f"failed: {verdict.reason()}",
                }
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name=SLO_CHECK,
                passed=verdict.passed,
                severity=AssetCheckSeverity.ERROR,
                description=verdict.reason(),
                metadata={"violations": MetadataValue.json(verdict.violations)},
            )
        ],
    )
