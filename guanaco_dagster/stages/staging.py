"""The staging layout: where a submission's files wait between stages, spelled in one place."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from inference.artifact import WEIGHTS_FILENAME


@dataclass(frozen=True)
class StagingLayout:
    """`<root>/<submission>/raw` holds the download, `<root>/<submission>/tensorized` the artifact."""

    root: Path | str

    def submission_dir(self, submission_id: str) -> Path:
        """Everything staged for one submission."""
        return Path(self.root) / submission_id

    def raw_dir(self, submission_id: str) -> Path:
        """The repository as downloaded from the Hub."""
        return self.submission_dir(submission_id) / "raw"

    def tensorized_dir(self, submission_id: str) -> Path:
        """The tensorized artifact (weights plus the config and tokenizer files vLLM needs)."""
        return self.submission_dir(submission_id) / "tensorized"

    def has_download(self, submission_id: str) -> bool:
        """Is a downloaded repository staged (what tensorizing reads)?"""
        return (self.raw_dir(submission_id) / "config.json").is_file()

    def has_artifact(self, submission_id: str) -> bool:
        """Is a tensorized artifact staged (what uploading reads)?"""
        return (self.tensorized_dir(submission_id) / WEIGHTS_FILENAME).is_file()

    def clear(self, submission_id: str) -> None:
        """Remove everything staged for the submission (it is in the cache now, or it failed)."""
        shutil.rmtree(self.submission_dir(submission_id), ignore_errors=True)
