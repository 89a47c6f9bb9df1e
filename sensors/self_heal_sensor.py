"""Self-healing: a deployed model whose server died is redeployed from the S3 cache, a few times an hour."""

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets import assets_from_stage
from assets.partitions import submissions_partitions
from guanaco_dagster.beta.self_heal import Heal, heal_dead_models
from guanaco_dagster.submissions.lifecycle import Status
from resources import DeployerResource, HealthResource, S3CacheResource, StoreResource
from resources.leftovers import leftovers_of
from sensors.jobs import submission_pipeline_job

# The stages a heal re-runs: the artifact is already in the S3 cache.
HEAL_ASSETS = assets_from_stage(Status.DEPLOYING)


def heal_run_request(heal: Heal) -> RunRequest:
    """A run that redeploys the model and stress-tests it again (run_key: one run per heal)."""
    return RunRequest(
        run_key=heal.run_key,
        partition_key=heal.submission_id,
        asset_selection=HEAL_ASSETS,
        tags={"guanaco/submission": heal.submission_id, "guanaco/heal": str(heal.attempt)},
    )


@sensor(
    job=submission_pipeline_job,
    minimum_interval_seconds=2,
    default_status=DefaultSensorStatus.RUNNING,
    description="Deployed models failing their health check → redeployed from the S3 cache (at most "
    "GUANACO_HEALTH_MAX_HEALS_PER_HOUR times an hour), then failed with the cause from the server's log.",
)
def self_heal_sensor(
    context: SensorEvaluationContext,
    store: StoreResource,
    deployer: DeployerResource,
    s3_cache: S3CacheResource,
    health: HealthResource,
) -> SensorResult | SkipReason:
    outcome = heal_dead_models(
        store.store,
        deployer.get_deployer(),
        health,
        leftovers=leftovers_of(deployer=deployer, s3_cache=s3_cache),
    )
    for submission_id, reason in outcome.failed.items():
        context.log.warning(f"{submission_id} failed: {reason}")
    for heal in outcome.heals:
        context.log.info(f"restarting the dead server of {heal.submission_id} (heal {heal.attempt})")
    if not outcome.heals:
        return SkipReason(outcome.summary())
    known = set(context.instance.get_dynamic_partitions(submissions_partitions.name))
    missing = sorted({heal.submission_id for heal in outcome.heals} - known)
    return SensorResult(
        run_requests=[heal_run_request(heal) for heal in outcome.heals],
        dynamic_partitions_requests=[submissions_partitions.build_add_request(missing)] if missing else [],
    )
