"""`tensorized_artifact`: the weights serialized with tensorizer, plus the files vLLM needs beside them."""

import shutil

from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.metadata import tensorize_metadata
from assets.partitions import submissions_partitions
from assets.raw_weights import raw_weights
from assets.stage import submission_stage
from guanaco_dagster.stages.tensorize import artifact_digest, tensorize_model
from guanaco_dagster.submissions.chat_template import platform_chat_template
from guanaco_dagster.submissions.formatter import PromptFormatter
from guanaco_dagster.submissions.lifecycle import Status
from resources import DeployerResource, PipelineConfigResource, StoreResource
from resources.leftovers import leftovers_of


@asset(
    partitions_def=submissions_partitions,
    deps=[raw_weights],
    group_name="submission_pipeline",
    kinds={"pytorch"},
)
def tensorized_artifact(
    context: AssetExecutionContext,
    store: StoreResource,
    pipeline: PipelineConfigResource,
    deployer: DeployerResource,
) -> MaterializeResult:
    """Serialize the state dict with tensorizer and read it back once with hash verification; a model that
    ships no chat template gets one built from the submission's formatter."""
    # The deployer too: a failure here stops the server prestarted for this submission.
    leftovers = leftovers_of(deployer=deployer, pipeline=pipeline)
    with submission_stage(context, store.store, Status.TENSORIZING, leftovers) as stage:
        out_dir = pipeline.staging.tensorized_dir(stage.submission_id)
        shutil.rmtree(out_dir, ignore_errors=True)
        raw_dir = pipeline.staging.raw_dir(stage.submission_id)
        chat_template = platform_chat_template(raw_dir, PromptFormatter(**stage.handoff.formatter))
        artifact = tensorize_model(raw_dir, out_dir, chat_template=chat_template)
        digest = artifact_digest(out_dir)
        stage.record(artifact_sha256=digest)
    return MaterializeResult(metadata=tensorize_metadata(artifact, digest))
