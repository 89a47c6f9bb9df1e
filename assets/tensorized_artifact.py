"""`tensorized_artifact`: the weights serialized with tensorizer, plus the files vLLM needs beside them."""

import shutil

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.partitions import submissions_partitions
from assets.raw_weights import raw_weights
from assets.stage import megabytes_per_s, submission_stage
from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.domain.submissions import get_submission
from guanaco_dagster.pipeline.tensorize import artifact_digest, tensorize_model
from resources import PipelineConfigResource, StoreResource


@asset(
    partitions_def=submissions_partitions,
    deps=[raw_weights],
    group_name="submission_pipeline",
    kinds={"pytorch"},
)
def tensorized_artifact(
    context: AssetExecutionContext, store: StoreResource, pipeline: PipelineConfigResource
) -> MaterializeResult:
    """Serialize the state dict with tensorizer and read it back once with hash verification."""
    with submission_stage(context, store.store, Status.TENSORIZING) as submission_id:
        staging = pipeline.submission_dir(submission_id)
        out_dir = staging / "tensorized"
        shutil.rmtree(out_dir, ignore_errors=True)
        try:
            artifact = tensorize_model(staging / "raw", out_dir)
            digest = artifact_digest(out_dir)
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        with store.store.session() as session:
            get_submission(session, submission_id).artifact_sha256 = digest
    return MaterializeResult(
        metadata={
            "artifact_sha256": digest,
            "weights_sha256": artifact.sha256,
            "weights_bytes": MetadataValue.int(artifact.weights_bytes),
            "tensors": MetadataValue.int(artifact.tensor_count),
            "serialize_s": MetadataValue.float(round(artifact.serialize_s, 3)),
            "serialize_MB_per_s": MetadataValue.float(
                megabytes_per_s(artifact.weights_bytes, artifact.serialize_s)
            ),
            "verify_s": MetadataValue.float(round(artifact.verify_s, 3)),
            "hash_verified": True,
            "files": MetadataValue.json(sorted(artifact.copied_files)),
            "local_path": MetadataValue.path(str(artifact.weights_path)),
        }
    )
