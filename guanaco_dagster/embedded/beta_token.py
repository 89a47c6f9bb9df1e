"""The beta service token: kept under the platform home so a restart does not lock the app out."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def save_beta_token(path: Path, token: str) -> None:
    """Write the token readable by its owner only (mode 0600, also when the file already existed)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token)
    os.chmod(path, 0o600)


def load_or_create_beta_token(path: Path, configured: str | None = None, rotate: bool = False) -> str:
    """The token beta routes accept: the configured one, else the saved one (unless `rotate`), else new.

    Whatever is returned is saved at `path`, so the next start (and the app's operator) reads the same one.
    """
    token = configured
    if token is None and not rotate:
        try:
            token = path.read_text().strip() or None
        except OSError:
            token = None
    token = token or secrets.token_urlsafe(24)
    save_beta_token(path, token)
    return token
