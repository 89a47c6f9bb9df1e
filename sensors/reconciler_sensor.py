"""Every 30 s: resume or fail submissions whose pipeline run is gone; stop servers of ended submissions.

What Dagster cannot see for itself: the embedded run launcher cannot check a run worker's health, so a run
whose process died stays "started"; and a server whose submission ended outside any run (a failed
teardown, a crash between failing and stopping) belongs to no run at all.
"""

from __future__ import annotations

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets import assets_from_stage
from assets.partitions import submissions_partitions
from guanaco_dagster.submissions.reconciler import Decision, reconcile
from resources import DeployerResource, PipelineConfigResource, S3CacheResource, StoreResource
from resources.leftovers import leftovers_of
from resources.reconciler import ReconcilerResource
from sensors.jobs import submission_pipeline_job

RECONCILER_INTERVAL_S = 30
# A run in one of these may still move the submission on; NOT_STARTED is left out on purpose: a run the
# daemon created but never queued will not start by itself.
IN_FLIGHT_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def has_pipeline_run_in_flight(instance: DagsterInstance, submission_id: str) -> bool:
    """Is a pipeline run for this submission's partition queued or running?"""
    runs = instance.get_run_records(
        filters=RunsFilter(
            job_name=submission_pipeline_job.name,
            tags={"dagster/partition": submission_id},
            statuses=IN_FLIGHT_STATUSES,
        ),
        limit=1,
    )
    return bool(runs)


def resume_run_request(decision: Decision) -> RunRequest:
    """A run of the pipeline from the stage the submission stopped in (earlier stages already done)."""
    return RunRequest(
        run_key=decision.run_key,
        partition_key=decision.submission_id,
        asset_selection=assets_from_stage(decision.stage),
        tags={"guanaco/submission": decision.submission_id, "guanaco/resume": decision.run_key or ""},
    )


@sensor(
    job=submission_pipeline_job,
    minimum_interval_seconds=RECONCILER_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Stale in-progress submissions (no run in flight) → resumed once, then failed; servers of "
    "failed submissions → torn down.",
)
def reconciler_sensor(
    context: SensorEvaluationContext,
    store: StoreResource,
    deployer: DeployerResource,
    s3_cache: S3CacheResource,
    pipeline: PipelineConfigResource,
    reconciler: ReconcilerResource,
) -> SensorResult | SkipReason:
    result = reconcile(
        store.store,
        deployer.get_deployer(),
        reconciler,
        has_run_in_flight=lambda submission_id: has_pipeline_run_in_flight(context.instance, submission_id),
        staging=pipeline.staging,
        leftovers=leftovers_of(deployer=deployer, s3_cache=s3_cache, pipeline=pipeline),
    )
    for decision in result.failed:
        context.log.warning(f"{decision.submission_id} failed: {decision.reason}")
    for submission_id in result.torn_down:
        context.log.info(f"stopped the server of ended submission {submission_id}")
    requests = [resume_run_request(d) for d in result.resumed if d.run_key]
    if not requests:
        return SkipReason(result.summary())
    known = set(context.instance.get_dynamic_partitions(submissions_partitions.name))
    missing = sorted({r.partition_key for r in requests if r.partition_key not in known})
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[submissions_partitions.build_add_request(missing)] if missing else [],
    )
