"""`raw_weights`: the submitted model, downloaded from the Hub at a pinned commit and sanity-checked."""

import shutil

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from assets.metadata import download_metadata
from assets.partitions import submissions_partitions
from assets.stage import submission_stage
from guanaco_dagster.stages.weight_checks import check_model_dir
from guanaco_dagster.submissions.chat_format import resolved_chat_format
from guanaco_dagster.submissions.lifecycle import Status
from resources import DeployerResource, HubResource, PipelineConfigResource, StoreResource
from resources.leftovers import leftovers_of

# Named, not imported: live_deployment's module imports this one.
LIVE_DEPLOYMENT = AssetKey("live_deployment")


@asset(partitions_def=submissions_partitions, group_name="submission_pipeline", kinds={"huggingface"})
def raw_weights(
    context: AssetExecutionContext,
    store: StoreResource,
    hub: HubResource,
    pipeline: PipelineConfigResource,
    deployer: DeployerResource,
) -> MaterializeResult:
    """Download the submission's repository at its revision (safetensors only) and check it is servable.

    The submission's inference server is prestarted first, so vLLM's imports overlap the intake; a failed
    check (here or in a later intake stage) stops it with the rest of the leftovers.
    """
    leftovers = leftovers_of(deployer=deployer, pipeline=pipeline)
    with submission_stage(
        context, store.store, Status.DOWNLOADING, leftovers, attempts=hub.hub_retries
    ) as stage:
        prestarted = run_deploys(context) and prestart_server(context, deployer, stage.submission_id)
        dest = pipeline.staging.raw_dir(stage.submission_id)
        shutil.rmtree(dest, ignore_errors=True)
        download = hub.download(
            stage.handoff.model_repo, stage.handoff.requested_revision, dest, pipeline.max_weight_bytes
        )
        report = check_model_dir(
            download.local_dir,
            max_parameters=pipeline.max_parameters,
            max_weight_bytes=pipeline.max_weight_bytes,
        )
        stage.record(
            resolved_revision=download.commit_sha,
            chat_format=resolved_chat_format(stage.handoff.chat_format, report.chat_template),
        )
    metadata = download_metadata(stage.handoff, download, report, pipeline)
    return MaterializeResult(metadata={**metadata, "server_prestarted": prestarted})


def run_deploys(context: AssetExecutionContext) -> bool:
    """Does this run go on to deploy? (An operator may materialize the intake alone: nothing to prestart.)"""
    return LIVE_DEPLOYMENT in context.job_def.asset_layer.selected_asset_keys


def prestart_server(context: AssetExecutionContext, deployer: DeployerResource, submission_id: str) -> bool:
    """Prestart the submission's server; a failure to do so only costs speed (deploy starts it)."""
    try:
        return deployer.prestart(submission_id)
    except Exception as error:  # noqa: BLE001 - an optimisation must never fail the intake
        context.log.warning(f"could not prestart the inference server (deploy will start it): {error}")
        return False
