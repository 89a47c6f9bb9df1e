"""`raw_weights`: the submitted model, downloaded from the Hub at a pinned commit and sanity-checked."""

import shutil

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.partitions import submissions_partitions
from assets.stage import markdown_table, megabytes_per_s, submission_stage
from guanaco_dagster.domain.lifecycle import Status
from guanaco_dagster.domain.submissions import get_submission
from guanaco_dagster.pipeline.weight_checks import check_model_dir
from resources import HubResource, PipelineConfigResource, StoreResource


@asset(partitions_def=submissions_partitions, group_name="submission_pipeline", kinds={"huggingface"})
def raw_weights(
    context: AssetExecutionContext, store: StoreResource, hub: HubResource, pipeline: PipelineConfigResource
) -> MaterializeResult:
    """Download the submission's repository at its revision (safetensors only) and check it is servable."""
    with submission_stage(context, store.store, Status.DOWNLOADING) as submission_id:
        with store.store.session() as session:
            submission = get_submission(session, submission_id)
            repo, revision = submission.model_repo, submission.requested_revision
        dest = pipeline.submission_dir(submission_id) / "raw"
        shutil.rmtree(dest, ignore_errors=True)
        try:
            download = hub.download(repo, revision, dest, pipeline.max_weight_bytes)
            report = check_model_dir(
                download.local_dir,
                max_parameters=pipeline.max_parameters,
                max_weight_bytes=pipeline.max_weight_bytes,
            )
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)  # a refused model leaves nothing on disk
            raise
        with store.store.session() as session:
            get_submission(session, submission_id).resolved_revision = download.commit_sha
    return MaterializeResult(
        metadata={
            "repository": repo,
            "requested_revision": revision,
            "commit_sha": download.commit_sha,
            "architecture": report.architecture,
            "parameters": MetadataValue.int(report.parameter_count),
            "weight_bytes": MetadataValue.int(report.weight_bytes),
            "download_s": MetadataValue.float(round(download.seconds, 3)),
            "download_MB_per_s": MetadataValue.float(megabytes_per_s(download.total_bytes, download.seconds)),
            "files": MetadataValue.json(download.files),
            "checks": markdown_table(
                {
                    "config.json parses": "yes",
                    "custom code (auto_map)": "none",
                    "architecture served by vLLM": "yes" if report.architecture_checked else "not checked",
                    "weights format": f"safetensors, {report.shard_count} shard(s), "
                    + "/".join(report.dtypes),
                    "parameters": f"{report.parameter_count:,} (limit {pipeline.max_parameters:,})",
                    "tokenizer": f"{report.tokenizer_class}, {report.tokenizer_vocab_size} tokens",
                }
            ),
            "local_path": MetadataValue.path(str(download.local_dir)),
        }
    )
