"""Reading and writing webdataset tars, one sample at a time, so no stage ever holds a shard in memory."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def iter_tar(fileobj: BinaryIO) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample of a webdataset tar read as a stream (no seeking, no extraction).

    Webdataset's rule: a sample is the run of consecutive files sharing the basename's part before the first
    dot; the extension is the rest (``syn.txt``), lower-cased.
    """
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        key: str | None = None
        sample: dict[str, bytes] = {}
        for member in tar:
            if not member.isfile():
                continue
            k, _, ext = member.name.rsplit("/", 1)[-1].partition(".")
            if k != key and sample:
                yield key, sample
                sample = {}
            key = k
            sample[ext.lower()] = tar.extractfile(member).read()
        if sample:
            yield key, sample


class TarWriter:
    """Writes samples into one local tar with fixed metadata (mtime 0, root, mode 0644), so the same samples in
    the same order always give the same bytes: a content-derived version can then name the files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = 0
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 (closed by close())

    def add(self, key: str, files: dict[str, bytes]) -> None:
        for ext, data in files.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uname = info.gname = "root"
            self._tar.addfile(info, io.BytesIO(data))
        self.samples += 1

    def close(self) -> None:
        self._tar.close()
