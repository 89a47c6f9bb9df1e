"""`feedback_summary`: what beta users thought of the model, refreshed whenever new feedback arrives."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.latency_report import latency_report
from assets.live_deployment import live_deployment
from assets.partitions import submissions_partitions
from guanaco_dagster.feedback.category_config import FeedbackCategoryConfig
from guanaco_dagster.feedback.feedback_report import build_feedback_report, save_feedback_report
from guanaco_dagster.feedback.text_hygiene import markdown_text
from resources import PrivacyResource, StoreResource
from resources.feedback_categories import FeedbackCategoryResource


@asset(
    partitions_def=submissions_partitions,
    deps=[live_deployment, latency_report],
    group_name="feedback",
    kinds={"python"},
)
def feedback_summary(
    context: AssetExecutionContext,
    store: StoreResource,
    privacy: PrivacyResource,
    feedback_categories: FeedbackCategoryResource,
) -> MaterializeResult:
    """Summarise all the submission's feedback (counts, Wilson interval, categories, samples); store it."""
    return MaterializeResult(
        metadata=summarise_submission(store, privacy, feedback_categories, context.partition_key)
    )


def summarise_submission(
    store: StoreResource,
    privacy: PrivacyResource,
    feedback_categories: FeedbackCategoryConfig,
    submission_id: str,
) -> dict[str, MetadataValue]:
    """Build and store one submission's feedback report; the metadata the Dagster UI shows for it."""
    with store.store.session() as session:
        report = build_feedback_report(
            session, submission_id, privacy.key(), feedback_categories.feedback_category_method
        )
        save_feedback_report(session, submission_id, report)
    summary = report["summary"]
    samples = report["sample_conversations"]
    return {
        "feedback_count": MetadataValue.int(summary["feedback_count"]),
        "thumbs_up_ratio": MetadataValue.float(round(summary["thumbs_up_ratio"], 4)),
        "wilson_95_low": MetadataValue.float(round(summary["wilson_low"], 4)),
        "wilson_95_high": MetadataValue.float(round(summary["wilson_high"], 4)),
        "summary": MetadataValue.md(report["markdown"]),
        "sample_conversations": MetadataValue.md(_conversations_markdown(samples)),
    }


def _conversations_markdown(samples: list[dict]) -> str:
    if not samples:
        return "_no conversations yet_"
    parts = []
    for sample in samples:
        verdict = {True: "👍", False: "👎", None: "–"}[sample["thumbs_up"]]
        # Users and bot creators wrote these: shown as literal one-line text, never as Markdown or HTML.
        lines = [f"**{sample['conversation_id'][:8]}** {verdict} {markdown_text(sample['text'])}", ""]
        lines += [
            f"> **{markdown_text(m['sender'])}**: {markdown_text(m['content'])}" for m in sample["messages"]
        ]
        parts.append("\n".join(lines))
    return "\n\n---\n\n".join(parts)
