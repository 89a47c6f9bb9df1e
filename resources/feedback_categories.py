"""How the feedback summary puts text in categories, as a resource (GUANACO_FEEDBACK_CATEGORY_METHOD)."""

from dagster import ConfigurableResource

from guanaco_dagster.feedback.category_config import FeedbackCategoryConfig


class FeedbackCategoryResource(ConfigurableResource, FeedbackCategoryConfig):
    """It *is* the category config, so the Dagster UI shows the method in use."""
