"""Guanaco's model server: vLLM's OpenAI server fed a tensorizer artifact from S3.

Runs alone in a container too, so nothing here imports Dagster or `guanaco_dagster`.
"""
