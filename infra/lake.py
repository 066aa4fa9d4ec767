"""The data lake: one root URI (a local folder or ``s3://bucket/prefix``) behind fsspec.

Every stage reads and writes through this class so that the same code runs on a laptop and on S3, and so that
writes are atomic everywhere: a reader never sees a half-written file. Locally a write goes to a hidden temp file
in the same folder and is renamed into place; on an object store the object is uploaded whole from a local temp
file (an object PUT is atomic), never streamed into its final key.

An object store that is down or frozen fails a step within a bounded time instead of hanging it: botocore gets
connect/read timeouts and a retry budget (``S3_CLIENT_CONFIG``, unless ``storage_options`` set their own), and
every upload has a deadline (``upload_timeout`` plus the object's size at ``MIN_UPLOAD_BYTES_PER_S``). The
deadline is needed because the read timeout does not cover a request that is still being sent (aiohttp has no
write timeout): an upload to a frozen server, of any size, was seen to wait for ever. A timed-out upload is
cancelled and raises :class:`LakeTimeoutError`; the key then holds the old object or (should the store still
complete a request it had received whole) the whole new one, never a part.

It imports no Dagster, so ops, benchmarks and tests use it directly.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.exceptions import FSTimeoutError

from infra.credentials import redacted, refuse_credentials

# botocore settings for s3:// roots (keys of ``botocore.config.Config``), each used unless ``storage_options``
# give ``config_kwargs`` with that key. Worst case for one request to a frozen endpoint: s3fs's own 5 tries x
# 3 attempts x 30 s; a dead endpoint (connection refused) fails in seconds.
S3_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 10,
    "read_timeout": 30,
    "retries": {"mode": "standard", "max_attempts": 3},
}
UPLOAD_TIMEOUT_S = 120.0  # per object upload, on top of its size at MIN_UPLOAD_BYTES_PER_S
MIN_UPLOAD_BYTES_PER_S = 1 << 20

_SAFE_PART = re.compile(r"^[A-Za-z0-9_.=@+-][A-Za-z0-9_.=@+ -]*$")


class UnsafePathError(ValueError):
    """A relative path that would escape the lake root or is not a plain name."""


_USE_AWS_VARIABLES = "pass S3 credentials as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (Dagster EnvVars)"


def check_root(root: str) -> str:
    """``root``, unless it is a URI carrying credentials (``s3://key:secret@bucket``): it is repeated in every path
    and message of the lake."""
    return refuse_credentials(root, "lake root", _USE_AWS_VARIABLES) if "://" in root else root


def check_endpoint_url(url: str | None) -> str | None:
    """``url``, unless it carries credentials (``http://key:secret@minio:9000``): Dagster stores it in the job
    snapshot, and botocore repeats it in its connection errors."""
    return None if url is None else refuse_credentials(url, "S3 endpoint URL", _USE_AWS_VARIABLES)


class LakeTimeoutError(TimeoutError):
    """An upload to the object store missed its deadline (the endpoint is down, frozen or far too slow)."""


def check_relative(rel: str) -> str:
    """Normalise a lake-relative path and refuse anything that could escape the root.

    Paths are often built from partition keys and file names found in input data, so they are treated as
    untrusted: no absolute paths, no ``..``, no empty or hidden-dot-only parts, no control characters.
    """
    if not isinstance(rel, str) or not rel.strip("/"):
        raise UnsafePathError(f"empty lake path: {rel!r}")
    if rel.startswith("/") or "\\" in rel or "://" in rel:
        raise UnsafePathError(f"lake paths are relative: {rel!r}")
    parts = rel.strip("/").split("/")
    for part in parts:
        if part in ("", ".", "..") or not _SAFE_PART.match(part):
            raise UnsafePathError(f"unsafe lake path part {part!r} in {rel!r}")
    return "/".join(parts)


class Lake:
    """A data-lake root with atomic writes and parquet/json helpers."""

    def __init__(
        self, root: str, storage_options: dict[str, Any] | None = None, upload_timeout: float = UPLOAD_TIMEOUT_S
    ) -> None:
        check_root(root)
        check_endpoint_url((dict(storage_options or {}).get("client_kwargs") or {}).get("endpoint_url"))
        self.root_uri = root.rstrip("/") if "://" in root else str(Path(root).resolve())
        self.upload_timeout = upload_timeout
        self._storage_options = dict(storage_options or {})
        if self.root_uri.startswith(("s3://", "s3a://")):
            given = self._storage_options.get("config_kwargs") or {}
            self._storage_options["config_kwargs"] = {**S3_CLIENT_CONFIG, **given}
            # s3fs caches listings for ever by default, so a process that has listed a folder would not see what
            # other processes write there later (``exists`` answers from the stale listing): always ask the store.
            self._storage_options.setdefault("use_listings_cache", False)
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root_uri, **self._storage_options)
        self.is_local = self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol
        if self.is_local:
            Path(self._root_path).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:  # never show credentials
        return f"Lake({self.root_uri!r})"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for other fsspec users (img2dataset, pyarrow); contains secrets, never log it."""
        return dict(self._storage_options)

    def path(self, rel: str) -> str:
        """The filesystem path (no protocol) of a lake-relative path."""
        return f"{self._root_path}/{check_relative(rel)}"

    def uri(self, rel: str) -> str:
        """The full URI of a lake-relative path (``file://`` for a local lake), for display, lineage tags and
        tools that take URIs."""
        location = f"{self.root_uri}/{check_relative(rel)}"
        return location if "://" in location else Path(location).as_uri()

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def list(self, prefix: str) -> list[str]:
        """All files below a lake folder, as lake-relative paths, sorted; hidden temp files are skipped."""
        base = self.path(prefix)
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        root = self._root_path.rstrip("/") + "/"
        out = []
        for p in found:
            rel = p[len(root) :] if p.startswith(root) else p.split(root, 1)[-1]
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            out.append(rel)
        return sorted(out)

    def delete(self, rel: str) -> None:
        p = self.path(rel)
        if self.fs.exists(p):
            self.fs.rm(p, recursive=True)

    @contextmanager
    def atomic_path(self, rel: str, suffix: str = "") -> Iterator[Path]:
        """Yield a local temp file path; on a clean exit it becomes ``rel`` in one step, else it vanishes."""
        dest = self.path(rel)
        if self.is_local:
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(dest).parent / f".{Path(dest).name}.tmp-{uuid.uuid4().hex}{suffix}"
        else:
            tmp = Path(tempfile.mkdtemp(prefix="clipfoundry-")) / f"upload{suffix}"
        try:
            yield tmp
            if self.is_local:
                os.replace(tmp, dest)
            else:
                self._upload(tmp, dest, rel)
        finally:
            if self.is_local:
                tmp.unlink(missing_ok=True)
            else:
                shutil.rmtree(tmp.parent, ignore_errors=True)

    def _upload(self, local: Path, dest: str, rel: str) -> None:
        """One object PUT (or multipart upload) under a deadline; on expiry it is cancelled, not left running."""
        deadline = self.upload_timeout + local.stat().st_size / MIN_UPLOAD_BYTES_PER_S
        try:
            self.fs.put_file(str(local), dest, timeout=deadline)
        except FSTimeoutError as e:
            endpoint = (self._storage_options.get("client_kwargs") or {}).get("endpoint_url")
            endpoint = redacted(endpoint) if endpoint else "AWS S3"
            raise LakeTimeoutError(
                f"upload of {self.uri(rel)} to {endpoint} did not finish within {deadline:.0f}s "
                "(is the object store up?); the upload was cancelled"
            ) from e

    def put_file(self, local: str | Path, rel: str) -> None:
        """Publish a finished local file at ``rel`` atomically (moved when local, uploaded otherwise)."""
        with self.atomic_path(rel) as tmp:
            if self.is_local:
                shutil.move(str(local), tmp)
            else:
                shutil.copyfile(local, tmp)

    def get_file(self, rel: str, local: str | Path) -> None:
        self.fs.get_file(self.path(rel), str(local))

    def open(self, rel: str, mode: str = "rb"):
        """Open for reading; writers use :meth:`atomic_path` or the write helpers instead."""
        if "r" not in mode:
            raise ValueError("Lake.open is for reading; use atomic_path or write_* to write")
        return self.fs.open(self.path(rel), mode)

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.atomic_path(rel) as tmp:
            tmp.write_bytes(data)

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        with self.open(rel) as f:
            return pq.read_table(io.BytesIO(f.read()), columns=columns)

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        with self.atomic_path(rel, suffix=".parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")
