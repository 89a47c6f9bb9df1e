"""The CLI's saved credentials: which service it talks to, and with which developer key.

Standard library only: every command (and `--help`) reads these, so they must cost nothing to import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "GUANACO_SERVICE_URL"
KEY_ENV = "GUANACO_KEY"
DATA_DIR_ENV = "GUANACO_DATA_DIR"


@dataclass(frozen=True)
class Credentials:
    """Where the CLI talks to, and with which developer key."""

    url: str
    key: str | None


def data_dir() -> Path:
    """The CLI's own folder: `$GUANACO_DATA_DIR`, else `~/.guanaco`."""
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".guanaco"


def credentials_path() -> Path:
    """The file `guanaco login` writes."""
    return data_dir() / "credentials.json"


def load_credentials() -> Credentials | None:
    """The saved `{url, key}`, or None when nobody logged in (or the file is unreadable)."""
    try:
        saved = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or not saved.get("url"):
        return None
    return Credentials(url=str(saved["url"]), key=saved.get("key"))


def save_credentials(url: str, key: str) -> Path:
    """Save the service URL and key, readable by the owner only (0600); returns the file's path."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    # Created 0600 from the start, so the key is never readable by others, not even for a moment.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"url": url, "key": key}, file)
    os.chmod(temporary, 0o600)  # O_CREAT's mode is ignored when the file already existed
    os.replace(temporary, path)
    return path


def clear_credentials() -> bool:
    """Forget the saved credentials; False when there were none."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


def resolve_credentials(url: str | None = None, key: str | None = None) -> Credentials:
    """URL and key from, in order: the explicit values, `GUANACO_SERVICE_URL`/`GUANACO_KEY`, saved
    credentials, and the default URL (with no key)."""
    saved = load_credentials()
    resolved_url = url or os.environ.get(URL_ENV) or (saved.url if saved else None) or DEFAULT_URL
    resolved_key = key or os.environ.get(KEY_ENV) or (saved.key if saved else None)
    return Credentials(url=resolved_url.rstrip("/"), key=resolved_key)
