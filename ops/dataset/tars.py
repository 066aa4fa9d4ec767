"""Writing webdataset tars, one sample at a time, so no stage ever holds a shard in memory (they are read back
with :func:`ops.tarscan.iter_samples`)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


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
