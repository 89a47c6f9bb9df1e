"""One dynamic partition per submission; its key is the submission id."""

from dagster import DynamicPartitionsDefinition

submissions_partitions = DynamicPartitionsDefinition(name="submissions")
