"""The data lake: one root URI (a local folder or ``s3://bucket/prefix``) behind fsspec.

Every stage reads and writes through this class so that the same code runs on a laptop and on S3, and so that
writes are atomic everywhere: a reader never sees a half-written file. Locally a write goes to a hidden temp file
in the same folder and is renamed into place; on an object store the object is uploaded whole from a local temp
file (an object PUT is atomic), never streamed into its final key.

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

_SAFE_PART = re.compile(r"^[A-Za-z0-9_.=@+-][A-Za-z0-9_.=@+ -]*$")


class UnsafePathError(ValueError):
    """A relative path that would escape the lake root or is not a plain name."""


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

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        self.root_uri = root.rstrip("/") if "://" in root else str(Path(root).resolve())
        self._storage_options = dict(storage_options or {})
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
        """The full URI of a lake-relative path, for display and for tools that take URIs."""
        return f"{self.root_uri}/{check_relative(rel)}"

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
                self.fs.put_file(str(tmp), dest)
        finally:
            if self.is_local:
                tmp.unlink(missing_ok=True)
            else:
                shutil.rmtree(tmp.parent, ignore_errors=True)

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
