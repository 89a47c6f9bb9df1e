"""Sensors and the jobs they launch, and the area's definitions."""

from dagster import Definitions

from sensors.failure_sensor import pipeline_failure_sensor
from sensors.feedback_sensor import feedback_sensor
from sensors.jobs import feedback_summary_job, submission_pipeline_job, summarise_feedback_batch
from sensors.lifecycle import lifecycle_job, lifecycle_sensor
from sensors.reconciler_sensor import reconciler_sensor
from sensors.self_heal_sensor import self_heal_sensor
from sensors.stress_test_sensor import stress_test_sensor
from sensors.submission_sensor import submission_sensor

ALL_SENSORS = [
    submission_sensor,
    feedback_sensor,
    pipeline_failure_sensor,
    lifecycle_sensor,
    reconciler_sensor,
    self_heal_sensor,
    stress_test_sensor,
]
ALL_JOBS = [submission_pipeline_job, feedback_summary_job, summarise_feedback_batch, lifecycle_job]

defs = Definitions(sensors=ALL_SENSORS, jobs=ALL_JOBS)

__all__ = [
    "ALL_JOBS",
    "ALL_SENSORS",
    "defs",
    "feedback_summary_job",
    "submission_pipeline_job",
    "summarise_feedback_batch",
]
