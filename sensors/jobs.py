"""Jobs the sensors launch: the submission pipeline and the feedback summaries."""

from dagster import (
    AssetMaterialization,
    AssetSelection,
    Config,
    Failure,
    OpExecutionContext,
    define_asset_job,
    job,
    op,
)

from assets import PIPELINE_ASSETS, feedback_summary
from assets.feedback_summary import summarise_submission
from assets.latency_report import latency_report
from assets.partitions import submissions_partitions
from resources import PrivacyResource, StoreResource
from resources.feedback_categories import FeedbackCategoryResource

# A feedback summary reads a few rows and writes one (a run worker measured ~150 MiB): on Kubernetes its run
# pod is small. These merge into the launcher's pipeline-sized defaults key by key, so every key is set.
SMALL_RUN_POD = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
            "limits": {"memory": "1Gi", "ephemeral-storage": "2Gi"},
        }
    }
}

# feedback_summary runs in the pipeline job too, so the blocking SLO check on latency_report gates it:
# a model that misses the SLO gets no summary, one that meets it shows an (empty) summary at once.
# A new submission goes through the job in two runs: up to its deployment, then the stress test with its SLO
# check and the first summary (launched as the deployment starts, waiting for it: assets/live_deployment.py;
# stress_test_sensor launches it once the first run succeeded if that launch failed). Dagster plans a check
# for every run that selects its asset and reads a planned check of a failed run as "Execution failed": in
# one run, every submission that failed at download would leave the check's page reading so.
UNTIL_DEPLOYED = [asset.key for asset in PIPELINE_ASSETS if asset.key != latency_report.key]
STRESS_TEST = [latency_report.key, feedback_summary.key]


submission_pipeline_job = define_asset_job(
    "submission_pipeline",
    selection=AssetSelection.assets(*PIPELINE_ASSETS, feedback_summary),
    description="Hub weights → tensorizer → S3 cache → vLLM deployment → stress test (blocking SLO check) "
    "→ first feedback summary.",
    tags={"guanaco/kind": "pipeline"},
)

feedback_summary_job = define_asset_job(
    "feedback_summary_job",
    selection=AssetSelection.assets(feedback_summary),
    description="Re-summarise one submission's feedback (one partition of feedback_summary).",
    tags={"guanaco/kind": "feedback", "dagster-k8s/config": SMALL_RUN_POD},
)


class FeedbackBatchConfig(Config):
    """The submissions whose summaries this run refreshes (chosen by the feedback sensor)."""

    submission_ids: list[str]


@op(description="Refresh each listed submission's feedback summary: a feedback_summary materialization each.")
def summarise_feedback(
    context: OpExecutionContext,
    config: FeedbackBatchConfig,
    store: StoreResource,
    privacy: PrivacyResource,
    feedback_categories: FeedbackCategoryResource,
) -> None:
    partitions = submissions_partitions.name
    missing = [
        sid for sid in config.submission_ids if not context.instance.has_dynamic_partition(partitions, sid)
    ]
    if missing:
        context.instance.add_dynamic_partitions(partitions, missing)
    failed: dict[str, str] = {}
    for submission_id in config.submission_ids:
        try:
            metadata = summarise_submission(store, privacy, feedback_categories, submission_id)
        except Exception as error:  # noqa: BLE001 - one bad submission must not hold back the others
            context.log.error(f"summarising {submission_id} failed: {error}")
            failed[submission_id] = str(error)
            continue
        # Recorded against the asset's partition, so the Dagster UI shows it like the asset's own runs.
        context.log_event(
            AssetMaterialization(asset_key=feedback_summary.key, partition=submission_id, metadata=metadata)
        )
    if failed:
        raise Failure(
            f"{len(failed)} of {len(config.submission_ids)} summaries failed; the sensor retries them",
            metadata={"failed": failed},
        )


@job(
    description="Refresh a bounded batch of stale feedback summaries in one small run (feedback sensor).",
    tags={"guanaco/kind": "feedback", "dagster-k8s/config": SMALL_RUN_POD},
)
def summarise_feedback_batch() -> None:
    summarise_feedback()
