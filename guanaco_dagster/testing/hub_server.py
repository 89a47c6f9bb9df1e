"""A Hugging Face Hub-protocol server on loopback, serving model repositories from a folder.

The unmodified `huggingface_hub` client (and transformers through it) downloads from it as from
huggingface.co: model info, tree listings, HEAD/GET on `resolve` URLs with the headers the client reads,
and the Hub's typed errors. The tests and the offline demo publish tiny models into it.

Storage under `root` (one folder per repository):

    root/<org>/<name>/refs.json            {"main": "<40-hex sha>", "v1": "<sha>"}
    root/<org>/<name>/commits/<sha>/...    the files of each commit, immutable once published
    root/<org>/<name>/access.json          optional: {"private": true, "tokens": ["hf_..."]}

Serving is stdlib only (`ThreadingHTTPServer` in a background thread).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = [
    "DEFAULT_BRANCH",
    "HubServer",
    "RepoAccess",
    "RequestRecord",
    "compute_commit_sha",
    "publish_repo",
    "read_access",
    "read_refs",
    "repo_path",
    "set_access",
]

logger = logging.getLogger(__name__)

DEFAULT_BRANCH = "main"
REFS_FILENAME = "refs.json"
ACCESS_FILENAME = "access.json"
COMMITS_DIRNAME = "commits"
TREE_PAGE_SIZE = 1000  # the Hub's page size for tree listings without `expand`
CHUNK_BYTES = 1024 * 1024
SAFETENSORS_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit

# Files the Hub stores in LFS for a new model repo (its default .gitattributes), plus anything over 10 MiB.
# LFS files carry a sha256 ETag and `lfs` metadata in listings; the client treats the two kinds differently.
# fmt: off
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".pkl", ".pickle",
    ".npy", ".npz", ".tflite", ".ot", ".pb", ".model", ".zip", ".tar", ".gz", ".zst", ".xz", ".parquet",
)
# fmt: on
LFS_MIN_BYTES = 10 * 1024 * 1024
# A gated repo's card stays public on the Hub; only the other files need approval.
GATED_PUBLIC_FILES = frozenset({"README.md", ".gitattributes"})

_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# Left out of published commits: git internals and the metadata `snapshot_download(local_dir=...)` writes.
_UNPUBLISHED_TOP_DIRS = frozenset({".git", ".cache"})
_publish_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------------------
# Storage: publishing commits and moving refs
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoAccess:
    """Who may read a repo: private repos hide everything, gated repos hide files but not metadata."""

    private: bool
    gated: bool
    tokens: frozenset[str]


def repo_path(root: Path, repo_id: str) -> Path:
    """Folder of `repo_id` ("org/name") under `root`; refuses ids that could escape `root`."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_NAME_PART.match(part) and ".." not in part for part in parts):
        raise ValueError(f"repo id must look like 'org/name' (letters, digits, '.', '_', '-'): {repo_id!r}")
    return root / parts[0] / parts[1]


def _publishable_files(source_dir: Path) -> list[tuple[str, Path]]:
    """(posix relative path, file) pairs of a folder in a stable order, skipping git and cache metadata."""
    files = []
    for path in source_dir.rglob("*"):
        relative = path.relative_to(source_dir)
        if relative.parts[0] in _UNPUBLISHED_TOP_DIRS or not path.is_file():
            continue
        files.append((relative.as_posix(), path))
    return sorted(files)


def compute_commit_sha(source_dir: Path) -> str:
    """Content address of a folder: sha1 over sorted relative paths, sizes and contents (40 hex)."""
    digest = hashlib.sha1()
    for relative, path in _publishable_files(source_dir):
        # Separators make ("a", "bc") and ("ab", "c") hash differently.
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomically(path: Path, payload: object) -> None:
    """Write JSON next to `path` and rename it into place, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
    os.replace(tmp_name, path)


def read_refs(root: Path, repo_id: str) -> dict[str, str]:
    """Ref name → commit sha for a repo; empty when the repo has none."""
    refs_file = repo_path(root, repo_id) / REFS_FILENAME
    return json.loads(refs_file.read_text()) if refs_file.is_file() else {}


def publish_repo(root: Path, repo_id: str, source_dir: Path, ref: str = DEFAULT_BRANCH) -> str:
    """Copy `source_dir` as a new commit of `repo_id`, point `ref` at it and return the commit sha."""
    if not source_dir.is_dir():
        raise NotADirectoryError(f"cannot publish {repo_id}: {source_dir} is not a folder")
    if not ref or ref.startswith("/") or _COMMIT_SHA.match(ref):
        raise ValueError(f"ref must be a branch or tag name, not {ref!r}")
    repo = repo_path(root, repo_id)
    sha = compute_commit_sha(source_dir)
    commit_dir = repo / COMMITS_DIRNAME / sha
    with _publish_lock:
        if not commit_dir.is_dir():
            # Copy beside the final place and rename: a server reading concurrently sees all or nothing.
            staging = Path(tempfile.mkdtemp(dir=_ensure_dir(repo / COMMITS_DIRNAME), prefix=".staging-"))
            for relative, path in _publishable_files(source_dir):
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)  # follows symlinks, e.g. a folder from the HF cache
            staging.rename(commit_dir)
        refs = read_refs(root, repo_id)
        refs[ref] = sha
        _write_json_atomically(repo / REFS_FILENAME, refs)
    return sha


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def set_access(root: Path, repo_id: str, tokens: list[str], gated: bool = False) -> None:
    """Make `repo_id` private (default) or gated: only requests bearing one of `tokens` may read it.

    Private: the repo answers as missing without a token. Gated: its info and listing stay public, its
    files (except the README) need a listed token, as on the Hub.
    """
    payload = {"private": not gated, "gated": "manual" if gated else False, "tokens": sorted(tokens)}
    _write_json_atomically(repo_path(root, repo_id) / ACCESS_FILENAME, payload)


def read_access(root: Path, repo_id: str) -> RepoAccess | None:
    """The access rule of a repo, or None when it is public."""
    access_file = repo_path(root, repo_id) / ACCESS_FILENAME
    if not access_file.is_file():
        return None
    data = json.loads(access_file.read_text())
    return RepoAccess(
        private=bool(data.get("private", False)),
        gated=bool(data.get("gated", False)),
        tokens=frozenset(data.get("tokens", [])),
    )


# ---------------------------------------------------------------------------------------------------------
# What the Hub says about each file: git and LFS identities, computed once per immutable commit
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """One file of a commit as the Hub describes it."""

    path: str
    local_path: Path
    size: int
    git_oid: str  # git blob sha1; for LFS files, of the pointer file (as on the Hub)
    lfs_sha256: str | None
    lfs_pointer_size: int | None

    @property
    def etag(self) -> str:
        """The Hub's ETag: the sha256 for LFS files, the git blob sha1 otherwise."""
        return self.lfs_sha256 or self.git_oid


def _is_lfs(path: str, size: int) -> bool:
    return size >= LFS_MIN_BYTES or path.lower().endswith(LFS_SUFFIXES)


def _git_blob_sha1(content_size: int, chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha1(f"blob {content_size}\0".encode())
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _describe_blob(relative: str, path: Path) -> _Blob:
    size = path.stat().st_size
    if not _is_lfs(relative, size):
        return _Blob(relative, path, size, _git_blob_sha1(size, _read_chunks(path)), None, None)
    sha256 = hashlib.sha256()
    for chunk in _read_chunks(path):
        sha256.update(chunk)
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256.hexdigest()}\nsize {size}\n"
    pointer_bytes = pointer.encode()
    return _Blob(
        relative,
        path,
        size,
        _git_blob_sha1(len(pointer_bytes), iter([pointer_bytes])),
        sha256.hexdigest(),
        len(pointer_bytes),
    )


class _CommitCache:
    """Blob descriptions per commit folder; commits never change, so hashing happens once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[Path, dict[str, _Blob]] = {}

    def blobs(self, commit_dir: Path) -> dict[str, _Blob]:
        with self._lock:
            cached = self._blobs.get(commit_dir)
        if cached is not None:
            return cached
        blobs = {
            relative: _describe_blob(relative, path) for relative, path in _publishable_files(commit_dir)
        }
        with self._lock:
            self._blobs[commit_dir] = blobs
        return blobs


# ---------------------------------------------------------------------------------------------------------
# Hub-shaped JSON documents
# ---------------------------------------------------------------------------------------------------------


def _hub_timestamp(epoch_s: float) -> str:
    """The Hub's date format ('2024-05-01T12:00:00.000Z'), the only one the client parses."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _safetensors_file_parameters(path: Path) -> dict[str, int] | None:
    """Parameter count per dtype of one safetensors file, read from its header (8-byte length + JSON)."""
    try:
        with path.open("rb") as handle:
            (header_bytes,) = struct.unpack("<Q", handle.read(8))
            if header_bytes > SAFETENSORS_MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(header_bytes))
        counts: dict[str, int] = {}
        for name, tensor in header.items():
            if name != "__metadata__":
                counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + math.prod(tensor["shape"])
        return counts
    except (OSError, ValueError, struct.error, AttributeError, KeyError, TypeError):
        return None  # a broken file is the platform's to detect; model info still answers


def _safetensors_parameters(blobs: dict[str, _Blob]) -> dict[str, int] | None:
    """Parameter count per dtype over all safetensors files, as the Hub reports it in model info."""
    totals: dict[str, int] = {}
    for blob in blobs.values():
        if blob.path.endswith(".safetensors"):
            for dtype, count in (_safetensors_file_parameters(blob.local_path) or {}).items():
                totals[dtype] = totals.get(dtype, 0) + count
    return totals or None


def _model_config(blobs: dict[str, _Blob]) -> dict[str, object] | None:
    """The slice of config.json the Hub echoes in model info."""
    blob = blobs.get("config.json")
    if blob is None:
        return None
    try:
        config = json.loads(blob.local_path.read_text())
    except (OSError, ValueError):
        return None
    return {key: config[key] for key in ("architectures", "model_type") if key in config}


def _model_tags(blobs: dict[str, _Blob], config: dict[str, object] | None) -> list[str]:
    tags = []
    if config is not None:
        tags.append("transformers")
    if any(path.endswith(".safetensors") for path in blobs):
        tags.append("safetensors")
    if any(path.endswith(".bin") for path in blobs):
        tags.append("pytorch")
    if config and isinstance(config.get("model_type"), str):
        tags.append(str(config["model_type"]))
    return tags


def _build_model_info(
    repo_id: str,
    sha: str,
    commit_dir: Path,
    blobs: dict[str, _Blob],
    access: RepoAccess | None,
    with_blobs: bool,
) -> dict[str, object]:
    """The JSON `GET /api/models/{repo}` answers; file sizes only with `?blobs=true`, as on the Hub."""
    config = _model_config(blobs)
    architectures = config.get("architectures") if config else None
    is_causal_lm = isinstance(architectures, list) and any(
        str(a).endswith("ForCausalLM") for a in architectures
    )
    siblings = []
    for blob in blobs.values():
        sibling: dict[str, object] = {"rfilename": blob.path}
        if with_blobs:
            sibling.update({"size": blob.size, "blobId": blob.git_oid})
            if blob.lfs_sha256:
                sibling["lfs"] = {
                    "size": blob.size,
                    "sha256": blob.lfs_sha256,
                    "pointerSize": blob.lfs_pointer_size,
                }
        siblings.append(sibling)
    parameters = _safetensors_parameters(blobs)
    modified = _hub_timestamp(commit_dir.stat().st_mtime)
    info: dict[str, object] = {
        "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
        "id": repo_id,
        "modelId": repo_id,
        "author": repo_id.split("/")[0],
        "sha": sha,
        "lastModified": modified,
        "createdAt": modified,
        "private": bool(access and access.private),
        "gated": "manual" if access and access.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "library_name": "transformers" if config is not None else None,
        "tags": _model_tags(blobs, config),
        "pipeline_tag": "text-generation" if is_causal_lm else None,
        "siblings": siblings,
        "spaces": [],
        "usedStorage": sum(blob.size for blob in blobs.values()),
    }
    if config is not None:
        info["config"] = config
    if parameters is not None:
        info["safetensors"] = {"parameters": parameters, "total": sum(parameters.values())}
    return info


def _tree_entries(
    sha: str, blobs: dict[str, _Blob], folder: str, recursive: bool, modified: str, expand: bool
) -> list[dict[str, object]]:
    """Entries under `folder` ('' for the root) as the tree API lists them: files and directories."""
    prefix = f"{folder}/" if folder else ""
    entries: dict[str, dict[str, object]] = {}
    for blob in blobs.values():
        if not blob.path.startswith(prefix):
            continue
        rest = blob.path[len(prefix) :].split("/")
        # Every folder on the way down is an entry too; non-recursive listings stop at the first level.
        depth = len(rest) if recursive else 1
        for level in range(1, min(depth, len(rest) - 1) + 1):
            dir_path = prefix + "/".join(rest[:level])
            entries.setdefault(dir_path, _directory_entry(sha, dir_path))
        if recursive or len(rest) == 1:
            entries[blob.path] = _file_entry(blob)
    if expand:
        last_commit = {"id": sha, "title": "Publish", "date": modified}
        for entry in entries.values():
            entry["lastCommit"] = last_commit
    return [entries[path] for path in sorted(entries)]


def _file_entry(blob: _Blob) -> dict[str, object]:
    entry: dict[str, object] = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": blob.path}
    if blob.lfs_sha256:
        entry["lfs"] = {"oid": blob.lfs_sha256, "size": blob.size, "pointerSize": blob.lfs_pointer_size}
    return entry


def _directory_entry(sha: str, dir_path: str) -> dict[str, object]:
    # A stable id per (commit, folder); the client only stores it, it never checks it against content.
    return {
        "type": "directory",
        "oid": hashlib.sha1(f"{sha}:{dir_path}".encode()).hexdigest(),
        "size": 0,
        "path": dir_path,
    }


# ---------------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------------


class _HubError(Exception):
    """An answer in the Hub's error shape; `code` goes to `X-Error-Code`, which the client maps to types."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered, for tests that check what the client asked for."""

    method: str
    path: str
    status: int


@dataclass
class _FaultPlan:
    status: int | None
    remaining: int
    delay_s: float


class _ServerState:
    """What the handler threads share: the storage root, the request counter and the fault plan."""

    def __init__(self, root: Path, tree_page_size: int) -> None:
        self.root = root
        self.tree_page_size = tree_page_size
        self.commits = _CommitCache()
        self.stopping = threading.Event()
        self.endpoint = ""
        self._lock = threading.Lock()
        self._request_count = 0
        self._fault: _FaultPlan | None = None
        self._records: deque[RequestRecord] = deque(maxlen=2000)
        self._connections: set[socket.socket] = set()

    def count_request(self) -> int:
        with self._lock:
            self._request_count += 1
            return self._request_count

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._request_count

    def set_fault(self, plan: _FaultPlan | None) -> None:
        with self._lock:
            self._fault = plan

    def take_fault(self) -> _FaultPlan | None:
        """Consume one injected fault, if any is left (checked and decremented under one lock)."""
        with self._lock:
            if self._fault is None or self._fault.remaining <= 0:
                return None
            self._fault.remaining -= 1
            return self._fault

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._records.append(entry)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Cut keep-alive connections, or their threads would go on answering after `stop()`."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never keeps the test process alive

    def __init__(self, address: tuple[str, int], state: _ServerState) -> None:
        self.state = state
        super().__init__(address, _HubRequestHandler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """Log instead of printing to stderr; a client hanging up (or `stop()` cutting it) is routine."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("connection from %s ended: %s", client_address, error)
        else:
            logger.exception("Hub server failed on a request from %s", client_address)


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in ("1", "true", "yes")


def _header_safe(text: str) -> str:
    """HTTP headers are latin-1 and single-line; the body keeps the exact message."""
    return text.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")


class _HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to the Hub endpoint it names."""

    # Keep-alive: the client sends many small requests through one pooled connection.
    protocol_version = "HTTP/1.1"
    server_version = "GuanacoHub/1.0"
    server: _HubHTTPServer

    # -- plumbing ----------------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.state.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.state.track(self.connection, open_=False)

    def log_message(self, format: str, *args: object) -> None:
        # Quiet by default; set this module's logger to DEBUG (or run main() with --verbose) to see them.
        logger.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = int(code) if isinstance(code, int) else 0  # HTTPStatus is an int too
        self.server.state.record(RequestRecord(self.command or "-", self.path, status))
        super().log_request(code, size)

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def _handle(self, send_body: bool) -> None:
        state = self.server.state
        self._request_id = f"guanaco-{state.count_request()}"
        self._headers_sent = False
        try:
            fault = state.take_fault()
            if fault is not None:
                self._apply_fault(fault)
            self._route(send_body)
        except _HubError as error:
            self._send_error(error, send_body)
        except ConnectionError:
            self.close_connection = True  # the client gave up (e.g. its timeout fired); nothing to answer
        except Exception as error:
            # A bug here should reach the developer as a 500 naming it, not as a dropped connection.
            logger.exception("Hub server failed on %s %s", self.command, self.path)
            if self._headers_sent:
                self.close_connection = True
            else:
                self._send_error(_HubError(500, f"hub server error: {error!r}"), send_body)

    def _apply_fault(self, fault: _FaultPlan) -> None:
        if fault.delay_s > 0:
            state = self.server.state
            state.stopping.wait(fault.delay_s)  # cut short by stop(), so shutting down never waits on it
        if fault.status is not None:
            raise _HubError(fault.status, f"injected fault: HTTP {fault.status}")

    # -- routing -----------------------------------------------------------------------------------------

    def _route(self, send_body: bool) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        # Split before unquoting: an encoded revision like 'refs%2Fpr%2F1' is one segment.
        segments = [segment for segment in url.path.split("/") if segment]
        if len(segments) >= 4 and segments[:2] == ["api", "models"]:
            repo_id = f"{unquote(segments[2])}/{unquote(segments[3])}"
            self._route_api(repo_id, segments[4:], query, send_body)
        elif segments == ["api", "agent-harnesses"]:
            # Fetched by the client's telemetry when HF_ENDPOINT points here; an empty registry is harmless.
            self._send_json(200, {"standardEnvVars": [], "harnesses": {}}, send_body)
        elif len(segments) >= 2 and segments[:2] == ["api", "models"]:
            raise _HubError(404, "this server answers only per-repo endpoints (/api/models/{org}/{name}/...)")
        elif segments and segments[0] in ("api", "datasets", "spaces"):
            raise _HubError(404, "this server serves model repositories only", code="RepoNotFound")
        elif len(segments) >= 4 and segments[2] == "resolve":
            repo_id = f"{unquote(segments[0])}/{unquote(segments[1])}"
            self._serve_file(repo_id, segments[3:], send_body)
        elif len(segments) >= 2 and "resolve" in segments[1:3]:
            raise _HubError(404, f"Repository {'/'.join(segments[:2])} not found", code="RepoNotFound")
        else:
            raise _HubError(404, f"no Hub endpoint at {url.path}")

    def _route_api(self, repo_id: str, rest: list[str], query: dict[str, list[str]], send_body: bool) -> None:
        if not rest:
            self._serve_model_info(repo_id, DEFAULT_BRANCH, query, send_body)
        elif rest[0] == "revision" and len(rest) >= 2:
            # The revision is the whole remainder, so an unencoded 'refs/pr/1' works as well.
            self._serve_model_info(repo_id, unquote("/".join(rest[1:])), query, send_body)
        elif rest[0] == "tree" and len(rest) >= 2:
            self._serve_tree(repo_id, rest[1:], query, send_body)
        else:
            raise _HubError(404, f"no Hub endpoint at /api/models/{repo_id}/{'/'.join(rest)}")

    # -- repo, access and revision ----------------------------------------------------------------------

    def _open_repo(self, repo_id: str) -> tuple[Path, RepoAccess | None]:
        """The repo's folder and access rule; refuses unknown and (without a listed token) private repos."""
        root = self.server.state.root
        try:
            repo = repo_path(root, repo_id)
        except ValueError as error:
            raise _HubError(404, f"Repository {repo_id} not found: {error}", code="RepoNotFound") from None
        if not (repo / REFS_FILENAME).is_file():
            raise _HubError(404, f"Repository {repo_id} not found", code="RepoNotFound")
        access = read_access(root, repo_id)
        if access is not None and access.private:
            self._require_token(repo_id, access)
        return repo, access

    def _bearer_token(self) -> str | None:
        """The token of `Authorization: Bearer <token>`, or None when the request carries none."""
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def _require_token(self, repo_id: str, access: RepoAccess) -> None:
        """Refuse a private repo as the Hub does: 401 without a token, 404 with one lacking access.

        Both carry `X-Error-Code: RepoNotFound` (the Hub never confirms a private repo exists), which the
        client raises as `RepositoryNotFoundError`; the message says which case it was.
        """
        token = self._bearer_token()
        if token is None:
            raise _HubError(
                401,
                f"Repository {repo_id} not found, or it is private and no token was sent",
                code="RepoNotFound",
            )
        if token not in access.tokens:
            raise _HubError(
                404,
                f"Repository {repo_id} not found, or the token sent has no access to it",
                code="RepoNotFound",
            )

    def _require_gated_access(self, repo_id: str, access: RepoAccess | None, path: str) -> None:
        """Gated repos: 401 without a token, 403 with an unlisted one; both `GatedRepo` (`GatedRepoError`)."""
        if access is None or not access.gated or path in GATED_PUBLIC_FILES:
            return
        token = self._bearer_token()
        if token is None:
            raise _HubError(
                401,
                f"Access to model {repo_id} is restricted. You must be authenticated to access it.",
                code="GatedRepo",
            )
        if token not in access.tokens:
            raise _HubError(
                403,
                f"Access to model {repo_id} is restricted and the token sent is not in the authorized list.",
                code="GatedRepo",
            )

    def _resolve_revision(self, repo: Path, repo_id: str, revision: str) -> str:
        """Commit sha of a ref name or of a full sha that exists in the repo."""
        sha = json.loads((repo / REFS_FILENAME).read_text()).get(revision)
        if sha is None and _COMMIT_SHA.match(revision):
            sha = revision
        if sha is None or not (repo / COMMITS_DIRNAME / sha).is_dir():
            raise _HubError(404, f"Revision '{revision}' not found in {repo_id}", code="RevisionNotFound")
        return sha

    def _split_revision(self, repo: Path, repo_id: str, segments: list[str]) -> tuple[str, list[str]]:
        """(sha, rest) of `rev/path...` segments; longer prefixes are tried for an unencoded 'refs/pr/1'."""
        for length in range(1, len(segments) + 1):
            with contextlib.suppress(_HubError):
                sha = self._resolve_revision(repo, repo_id, unquote("/".join(segments[:length])))
                return sha, segments[length:]
        return self._resolve_revision(repo, repo_id, unquote(segments[0])), []  # raises RevisionNotFound

    # -- endpoints ---------------------------------------------------------------------------------------

    def _serve_model_info(
        self, repo_id: str, revision: str, query: dict[str, list[str]], send_body: bool
    ) -> None:
        repo, access = self._open_repo(repo_id)
        sha = self._resolve_revision(repo, repo_id, revision)
        commit_dir = repo / COMMITS_DIRNAME / sha
        blobs = self.server.state.commits.blobs(commit_dir)
        info = _build_model_info(repo_id, sha, commit_dir, blobs, access, with_blobs=_flag(query, "blobs"))
        self._send_json(200, info, send_body)

    def _serve_tree(
        self, repo_id: str, segments: list[str], query: dict[str, list[str]], send_body: bool
    ) -> None:
        repo, _access = self._open_repo(repo_id)
        sha, folder_segments = self._split_revision(repo, repo_id, segments)
        # The client sends the folder as one encoded segment ('sub%2Fdir'); accept plain slashes as well.
        folder = unquote("/".join(folder_segments)).strip("/")
        commit_dir = repo / COMMITS_DIRNAME / sha
        blobs = self.server.state.commits.blobs(commit_dir)
        if folder and not any(path.startswith(f"{folder}/") for path in blobs):
            raise _HubError(404, f"Folder '{folder}' not found in {repo_id} at {sha}", code="EntryNotFound")
        modified = _hub_timestamp(commit_dir.stat().st_mtime)
        entries = _tree_entries(
            sha, blobs, folder, _flag(query, "recursive"), modified, _flag(query, "expand")
        )
        self._send_tree_page(entries, query, send_body)

    def _send_tree_page(
        self, entries: list[dict[str, object]], query: dict[str, list[str]], send_body: bool
    ) -> None:
        """One page of a listing; a `Link: <...>; rel="next"` header points at the next, as on the Hub."""
        page_size = self.server.state.tree_page_size
        try:
            start = int(query.get("cursor", ["0"])[-1])
        except ValueError:
            raise _HubError(400, "cursor must be an integer offset") from None
        headers = {}
        if start + page_size < len(entries):
            next_query = {key: values[-1] for key, values in query.items() if key != "cursor"}
            next_query["cursor"] = str(start + page_size)
            next_url = f"{self.server.state.endpoint}{urlsplit(self.path).path}?{urlencode(next_query)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._send_json(200, entries[start : start + page_size], send_body, headers)

    def _serve_file(self, repo_id: str, segments: list[str], send_body: bool) -> None:
        """`HEAD`/`GET /{repo}/resolve/{rev}/{path}` with the headers the client needs, and byte ranges."""
        repo, access = self._open_repo(repo_id)
        sha, path_segments = self._split_revision(repo, repo_id, segments)
        path = unquote("/".join(path_segments))
        blob = self.server.state.commits.blobs(repo / COMMITS_DIRNAME / sha).get(path)
        if blob is None:
            # X-Repo-Commit lets the client cache "this file does not exist at this commit".
            raise _HubError(
                404,
                f"Entry '{path}' not found in {repo_id} at {sha}",
                code="EntryNotFound",
                headers={"X-Repo-Commit": sha},
            )
        self._require_gated_access(repo_id, access, path)
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if blob.lfs_sha256:
            # On the Hub these come with the redirect to the CDN; the client prefers them over ETag/length.
            headers.update({"X-Linked-Etag": f'"{blob.lfs_sha256}"', "X-Linked-Size": str(blob.size)})
        byte_range = self._requested_range(blob.size) if send_body else None
        if byte_range is None:
            self._send_headers(200, headers, blob.size)
            start, end = 0, blob.size - 1
        else:
            start, end = byte_range
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
            self._send_headers(206, headers, end - start + 1)
        if send_body:
            self._copy_bytes(blob.local_path, start, end - start + 1)

    def _requested_range(self, size: int) -> tuple[int, int] | None:
        """(first, last) byte of one `Range: bytes=...`; None to send it all; 416 if unsatisfiable."""
        header = self.headers.get("Range")
        if not header:
            return None
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
        if match is None or match.group(1) == match.group(2) == "":
            return None  # several ranges or a malformed one: a full 200 answer is allowed by RFC 9110
        first, last = match.groups()
        if first == "":  # suffix form: the last N bytes
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            raise _HubError(
                416,
                f"range {header} not satisfiable for {size} bytes",
                headers={"Content-Range": f"bytes */{size}"},
            )
        return start, end

    # -- writing -----------------------------------------------------------------------------------------

    def _send_headers(self, status: int, headers: dict[str, str], content_length: int) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(content_length))
        self.send_header("X-Request-Id", self._request_id)
        self.end_headers()
        self._headers_sent = True

    def _send_json(
        self, status: int, payload: object, send_body: bool, headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        self._send_headers(
            status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, len(body)
        )
        if send_body:
            self.wfile.write(body)

    def _send_error(self, error: _HubError, send_body: bool) -> None:
        headers = {"X-Error-Message": _header_safe(error.message), **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send_json(error.status, {"error": error.message}, send_body, headers)

    def _copy_bytes(self, path: Path, start: int, length: int) -> None:
        with path.open("rb") as handle:
            handle.seek(start)
            while length > 0:
                chunk = handle.read(min(CHUNK_BYTES, length))
                if not chunk:
                    raise ConnectionResetError("file shrank while being served")  # closes the connection
                self.wfile.write(chunk)
                length -= len(chunk)


class HubServer:
    """A Hub-protocol server over `root` on loopback, in a background thread; use as a context manager.

    `endpoint` goes to the client explicitly: `HfApi(endpoint=...)`, `snapshot_download(..., endpoint=...)`.
    """

    def __init__(
        self, root: Path, host: str = "127.0.0.1", port: int = 0, *, tree_page_size: int = TREE_PAGE_SIZE
    ) -> None:
        self.root = Path(root)
        self.host = host
        self._requested_port = port
        self._state = _ServerState(self.root, tree_page_size)
        self._httpd: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (chosen by the OS when constructed with port=0)."""
        if self._httpd is None:
            raise RuntimeError("HubServer is not started")
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        """Base URL to give the client, e.g. 'http://127.0.0.1:PORT'."""
        return f"http://{self.host}:{self.port}"

    @property
    def request_count(self) -> int:
        """Requests received since start, faulted ones included."""
        return self._state.request_count

    @property
    def requests(self) -> list[RequestRecord]:
        """The last answered requests (method, raw path, status), oldest first."""
        return self._state.records()

    def start(self) -> HubServer:
        """Bind and serve in a daemon thread; returns self so `HubServer(root).start()` reads naturally."""
        if self._httpd is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self._state.stopping.clear()
        self._httpd = _HubHTTPServer((self.host, self._requested_port), self._state)
        self._state.endpoint = self.endpoint
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"hub-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.debug("Hub server at %s serving %s", self.endpoint, self.root)
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections and release the port."""
        if self._httpd is None:
            return
        self._state.stopping.set()
        self._httpd.shutdown()
        self._state.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def inject_faults(self, status: int | None = 503, count: int = 1, delay_s: float = 0.0) -> None:
        """Answer the next `count` requests with `status`, after waiting `delay_s` (to trip client timeouts).

        `status=None` with a delay makes slow but successful answers.
        """
        if count < 0 or delay_s < 0:
            raise ValueError("count and delay_s must not be negative")
        self._state.set_fault(_FaultPlan(status=status, remaining=count, delay_s=delay_s))

    def clear_faults(self) -> None:
        """Drop any faults not yet served."""
        self._state.set_fault(None)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _parse_publish_arg(value: str) -> tuple[str, Path]:
    repo_id, separator, folder = value.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected ORG/NAME=DIR, got {value!r}")
    return repo_id, Path(folder)


def main(argv: list[str] | None = None) -> None:
    """Serve `--root` until Ctrl-C: `python -m guanaco_dagster.testing.hub_server --root DIR --port P`."""
    parser = argparse.ArgumentParser(
        description="Serve model repositories over the Hugging Face Hub protocol."
    )
    parser.add_argument("--root", type=Path, required=True, help="storage folder (root/<org>/<name>/...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--publish",
        type=_parse_publish_arg,
        action="append",
        default=[],
        metavar="ORG/NAME=DIR",
        help="publish a folder at 'main' before serving (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    for repo_id, folder in args.publish:
        sha = publish_repo(args.root, repo_id, folder)
        logger.info("published %s from %s at main = %s", repo_id, folder, sha)
    stop_requested = threading.Event()
    # Explicit handlers: a process started in the background by a script inherits an ignored SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())
    with HubServer(args.root, host=args.host, port=args.port) as server:
        logger.info("Hub protocol at %s (root %s); Ctrl-C stops", server.endpoint, args.root)
        stop_requested.wait()
    logger.info("Hub server stopped")


if __name__ == "__main__":
    main()
