"""The executor of the code location, chosen by name in one place (`GUANACO_EXECUTOR`).

- `in_process` (default, embedded and Kubernetes): every step of a run executes in the run's own
  process. On Kubernetes the `K8sRunLauncher` gives each run one pod, so `raw_weights` and
  `tensorized_artifact` share that pod's disk (`GUANACO_HOME`, an emptyDir sized for models) and the
  weights are staged once.
- `k8s`: `k8s_job_executor`, one Kubernetes Job per step. Steps then run in different pods, so the
  staging folder must be a ReadWriteMany volume mounted at `GUANACO_HOME` in every step pod (set it in
  `GUANACO_K8S_STEP_CONFIG`); without one, `tensorized_artifact` finds no downloaded weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from dagster import ExecutorDefinition, in_process_executor

EXECUTORS = ("in_process", "k8s")
DEFAULT_MAX_CONCURRENT_STEPS = 4


def k8s_executor_config(env: Mapping[str, str]) -> dict[str, Any]:
    """`k8s_job_executor` configuration from the environment.

    GUANACO_K8S_MAX_CONCURRENT_STEPS: step pods at once per run (default 4).
    GUANACO_K8S_STEP_CONFIG: JSON of dagster-k8s's `step_k8s_config` (container_config, pod_spec_config,
    pod_template_spec_metadata, job_spec_config, job_metadata), e.g. the ReadWriteMany volume and its
    mount, and resources.
    """
    raw_step_config = env.get("GUANACO_K8S_STEP_CONFIG", "").strip()
    try:
        step_config = json.loads(raw_step_config) if raw_step_config else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"GUANACO_K8S_STEP_CONFIG is not valid JSON: {error}") from error
    if not isinstance(step_config, dict):
        raise ValueError("GUANACO_K8S_STEP_CONFIG must be a JSON object (dagster-k8s step_k8s_config)")
    raw_max = env.get("GUANACO_K8S_MAX_CONCURRENT_STEPS", str(DEFAULT_MAX_CONCURRENT_STEPS))
    try:
        max_concurrent = int(raw_max)
    except ValueError as error:
        raise ValueError(f"GUANACO_K8S_MAX_CONCURRENT_STEPS must be an integer, not {raw_max!r}") from error
    config: dict[str, Any] = {"max_concurrent": max_concurrent}
    if step_config:
        config["step_k8s_config"] = step_config
    return config


def choose_executor(name: str, env: Mapping[str, str] | None = None) -> ExecutorDefinition:
    """The executor called `name` ('in_process' or 'k8s'), configured from `env` (os.environ if omitted)."""
    if name == "in_process":
        return in_process_executor
    if name == "k8s":
        # Imported here: dagster_k8s costs every run worker of the embedded platform ~1 s it never needs.
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(os.environ if env is None else env))
    raise ValueError(f"GUANACO_EXECUTOR must be one of {', '.join(EXECUTORS)}, not {name!r}")
