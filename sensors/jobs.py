"""Jobs the sensors launch: the submission pipeline and the feedback summary."""

from dagster import AssetSelection, define_asset_job

from assets import PIPELINE_ASSETS, feedback_summary

submission_pipeline_job = define_asset_job(
    "submission_pipeline",
    selection=AssetSelection.assets(*PIPELINE_ASSETS),
    description="Hub weights → tensorizer → S3 cache → vLLM deployment → stress test (SLO check).",
    tags={"guanaco/kind": "pipeline"},
)

feedback_summary_job = define_asset_job(
    "feedback_summary_job",
    selection=AssetSelection.assets(feedback_summary),
    description="Re-summarise a submission's feedback.",
    tags={"guanaco/kind": "feedback"},
)
