"""Jobs the sensors launch: the submission pipeline and the feedback summary."""

from dagster import AssetSelection, define_asset_job

from assets import PIPELINE_ASSETS, feedback_summary

# feedback_summary runs in the pipeline job too, so the blocking SLO check on latency_report gates it:
# a model that misses the SLO gets no summary, one that meets it shows an (empty) summary at once.
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
    description="Re-summarise a submission's feedback.",
    tags={"guanaco/kind": "feedback"},
)
