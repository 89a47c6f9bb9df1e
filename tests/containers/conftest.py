"""The container tier runs only on demand: `make test-containers`
(GUANACO_TEST_CONTAINERS=1 and a Docker daemon).
"""

from __future__ import annotations

import os

import pytest

from tests.containers.engine import INFERENCE_IMAGE, engine_problem, image_problem


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's tests unless asked for, and say why when the engine or the image is missing."""
    here = os.path.dirname(__file__)
    ours = [item for item in items if str(item.fspath).startswith(here)]
    if not ours:
        return
    if os.environ.get("GUANACO_TEST_CONTAINERS") != "1":
        reason = "container tier: run `make test-containers` (or GUANACO_TEST_CONTAINERS=1 with Docker up)"
    else:
        reason = engine_problem() or image_problem(INFERENCE_IMAGE)
    if reason:
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=reason))
