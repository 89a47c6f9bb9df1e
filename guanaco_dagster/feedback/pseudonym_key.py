"""The platform's pseudonym key: the secret that makes user pseudonyms impossible to reverse by guessing.

A random key is created on first use under the platform home, readable by its owner only; every process
of one platform (service, Dagster) reads the same file. `GUANACO_PSEUDONYM_KEY` overrides it, which is
what several machines (Kubernetes pods) need: set it from one Secret.
"""

from __future__ import annotations

import os
import secrets
from functools import cache
from pathlib import Path

KEY_FILENAME = "pseudonym.key"
OWNER_ONLY = 0o600


@cache
def _key_from_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target, then linked into place: a second process starting at the same moment
        # either links first or reads a complete key, never half of one, and nothing is ever overwritten.
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(OWNER_ONLY)  # copied or restored with looser permissions: close them again
    key = path.read_text().strip()
    if not key:
        raise RuntimeError(f"the pseudonym key file {path.name} under the platform home is empty: delete it")
    return key.encode()


def pseudonym_key(home: Path, override: str | None = None) -> bytes:
    """The key pseudonyms are made with: `override` (GUANACO_PSEUDONYM_KEY) or the one under `home`."""
    if override:
        return override.encode()
    return _key_from_file(Path(home).resolve() / KEY_FILENAME)
