"""Shared fixtures: real servers (Hub protocol, SeaweedFS S3, vLLM, PostgreSQL), started once per session."""

import os

# Tests never touch a real Dagster instance or the internet's Hub.
os.environ.pop("DAGSTER_HOME", None)
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "0")

pytest_plugins = [
    "tests.fixtures.store",
    "tests.fixtures.hub",
    "tests.fixtures.s3",
    "tests.fixtures.vllm",
    "tests.fixtures.service",
]
