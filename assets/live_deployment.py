"""`live_deployment`: an inference server streaming the artifact from S3, healthy and reachable."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, RunsFilter, asset

from assets.cached_s3_object import cached_s3_object
from assets.partitions import submissions_partitions
from assets.stage import submission_stage
from guanaco_dagster.deployment.base import DeploymentSpec
from guanaco_dagster.service.dagster_runs import (
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
    STRESS_TEST_SENSOR,
    DagsterUnavailable,
    stops_at_deployment,
    stress_test_run_key,
)
from guanaco_dagster.stages.context_length import cached_model_max_len
from guanaco_dagster.submissions.lifecycle import Status
from resources import DeployerResource, S3CacheResource, StoreResource
from resources.dagster_webserver import DagsterWebserverResource
from resources.leftovers import leftovers_of


@asset(
    partitions_def=submissions_partitions,
    deps=[cached_s3_object],
    group_name="submission_pipeline",
    kinds={"vllm"},
)
def live_deployment(
    context: AssetExecutionContext,
    store: StoreResource,
    deployer: DeployerResource,
    s3_cache: S3CacheResource,
    dagster_webserver: DagsterWebserverResource,
) -> MaterializeResult:
    """Start (or find) the submission's vLLM server and wait until it answers its health check."""
    leftovers = leftovers_of(deployer=deployer, s3_cache=s3_cache)
    with submission_stage(context, store.store, Status.DEPLOYING, leftovers) as stage:
        # Its worker starts while the server loads; it waits for this stage's outcome in the store.
        stress_run = _launch_stress_test_run(context, dagster_webserver)
        # The model's own context limit travels in the artifact's config; vLLM refuses a longer one.
        spec = DeploymentSpec(
            submission_id=stage.submission_id,
            artifact_uri=stage.handoff.artifact_uri,
            served_model_name=stage.submission_id,
            max_model_len=cached_model_max_len(
                s3_cache.client(), stage.handoff.artifact_uri, deployer.platform_max_model_len()
            ),
        )
        deployment = deployer.get_deployer().deploy(spec)
        stage.record(endpoint_url=deployment.endpoint_url, served_model_name=spec.served_model_name)
    return MaterializeResult(
        metadata={
            "endpoint": MetadataValue.url(deployment.endpoint_url),
            "deployer": deployer.kind,
            "startup_s": MetadataValue.float(round(deployment.startup_s, 2)),
            "artifact_uri": spec.artifact_uri,
            "served_model_name": spec.served_model_name,
            "max_model_len": MetadataValue.int(spec.max_model_len),
            **_server_footprint(deployment.details),
            "details": MetadataValue.json(deployment.details),
            "stress_test_run": stress_run or "left to stress_test_sensor",
        }
    )


def _launch_stress_test_run(
    context: AssetExecutionContext, webserver: DagsterWebserverResource
) -> str | None:
    """Launch the stress-test run now if this run stops at the deployment; its id, None if not launched.

    Keyed by the first run of this run's retries and tagged as stress_test_sensor's: a retry after a crash
    finds the run its first attempt launched, and the sensor (the safety net once this run succeeded)
    launches no second one.
    """
    run = context.run
    selection = {key.to_user_string() for key in run.asset_selection or ()}
    if not stops_at_deployment(selection):
        return None
    first_run_id = run.root_run_id or run.run_id
    launched = context.instance.get_run_ids(
        RunsFilter(tags={RUN_KEY_TAG: stress_test_run_key(first_run_id), SENSOR_NAME_TAG: STRESS_TEST_SENSOR})
    )
    if launched:
        return launched[0]
    try:
        run_id = webserver.launch_stress_test_run(context.partition_key, first_run_id)
    except DagsterUnavailable as error:
        context.log.warning(f"{error}; the stress-test sensor will launch the stress test")
        return None
    context.log.info(f"stress-test run {run_id} launched; it waits for this deployment")
    return run_id


def _server_footprint(details: dict) -> dict[str, MetadataValue]:
    """What a local server holds once healthy: its process tree's PSS and RSS (RSS counts shared libraries
    in full), and the tokens its KV cache was sized for; {} for deployers that do not say."""
    memory = details.get("memory") or {}
    footprint = {
        f"server_{key}": MetadataValue.float(memory[key]) for key in ("pss_mib", "rss_mib") if key in memory
    }
    if details.get("kv_cache_tokens"):
        footprint["kv_cache_tokens"] = MetadataValue.int(details["kv_cache_tokens"])
    return footprint
