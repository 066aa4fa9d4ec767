"""dataset: write the final training shards from the samples every stage kept, under a content-derived version.

Images are read once, streamed from ``download/<shard>.tar`` into local staging tars of ``samples_per_shard``
samples; only one shard's (small) stage tables and one sample's bytes are in memory at a time. The version is a
SHA-256 over the writer settings and, in write order, every sample's key and the digest of each of its files,
so it names exactly the bytes written: same inputs and settings, same version (the manifest's ledger counts
are a report, not content: they are not hashed). When ``dataset/<version>/``
already has its manifest, nothing is published; otherwise the tars are published atomically through the lake
and ``manifest.json`` last, so a reader that sees the manifest sees a complete dataset.

Output samples are keyed by ``uid`` (``<uid>.jpg``, ``.txt`` raw caption, ``.syn.txt`` synthetic caption when
recaption wrote one, ``.json`` with uid, p_keep, sha256 and lineage), in input-shard order then tar order.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.lake import Lake
from ops.dataset.selection import Selected, StageCounts, select_shard
from ops.dataset.tars import TarWriter
from ops.download import iter_tar_samples
from ops.report import StageReport

FORMAT = 1
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
REASONS = frozenset({"missing_image"})


@dataclass(frozen=True)
class DatasetConfig:
    """Writer settings; all of them are part of the version."""

    stages: tuple[str, ...] = ("crawl", "download")
    samples_per_shard: int = 10_000
    online_curation: bool = False


@dataclass
class DatasetResult:
    version: str
    manifest_path: str
    manifest: dict[str, Any]
    report: StageReport
    written: bool  # False when this version was already in the lake


def dataset_prefix(version: str) -> str:
    return f"dataset/{version}"


def write_dataset(lake: Lake, shards: list[str], config: DatasetConfig) -> DatasetResult:
    """Select, stream and publish; see the module docstring for the guarantees."""
    report = StageReport(stage="dataset", shard="all")
    counts: dict[str, StageCounts] = {}
    settings = {"format": FORMAT, **asdict(config), "stages": list(config.stages)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    staging = Path(tempfile.mkdtemp(prefix="clipfoundry-dataset-"))
    try:
        with report.timed():
            out = _ShardSequence(staging, config.samples_per_shard)
            for shard in sorted(shards):
                selected = select_shard(lake, shard, config.stages, counts, config.online_curation)
                written = _copy_shard(lake, shard, selected, out, digest)
                report.count([True] * len(written), [""] * len(written))
                missing = len(selected) - len(written)
                report.count([False] * missing, ["missing_image"] * missing)
            out.close()
            version = digest.hexdigest()[:16]
            manifest = {
                "version": version,
                "settings": settings,
                "input_shards": sorted(shards),
                "stages": {stage: counts[stage].to_dict() for stage in config.stages},
                "dataset": {"rows_in": report.rows_in, "rows_kept": report.rows_kept, "dropped": dict(report.dropped)},
                "samples": report.rows_kept,
                # samples per epoch when the loader redraws curation (online curation): sum of p_keep
                "expected_samples_per_epoch": round(out.p_keep_sum, 3),
                "shards": out.shards,
            }
            manifest_path = f"{dataset_prefix(version)}/manifest.json"
            written_now = not lake.exists(manifest_path)
            if written_now:
                for entry, local in zip(out.shards, out.paths, strict=True):
                    lake.put_file(local, f"{dataset_prefix(version)}/{entry['path']}")
                lake.write_json(manifest_path, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.extra.update(version=version, shards=len(out.shards), published=written_now)
    report.check()
    return DatasetResult(version, manifest_path, manifest, report, written_now)


def _copy_shard(lake: Lake, shard: str, selected: dict[str, Selected], out: _ShardSequence, digest: Any) -> set[str]:
    """Stream one download tar, writing the selected samples; returns the uids written."""
    written: set[str] = set()
    for _, files in iter_tar_samples(lake, shard):
        meta = json.loads(files.get("json", b"{}"))
        uid = meta.get("uid")
        if uid not in selected or uid in written:
            continue
        ext = next((e for e in IMAGE_EXTENSIONS if e in files), None)
        if ext is None:
            continue
        sample = _sample_files(uid, shard, selected[uid], files[ext], ext)
        digest.update(uid.encode())
        for name, data in sample.items():
            digest.update(f"\0{name}\0{hashlib.sha256(data).hexdigest()}".encode())
        out.add(uid, sample)
        out.p_keep_sum += 1.0 if selected[uid].p_keep is None else selected[uid].p_keep
        written.add(uid)
    return written


def _sample_files(uid: str, shard: str, s: Selected, image: bytes, ext: str) -> dict[str, bytes]:
    meta = {
        "uid": uid,
        "sha256": hashlib.sha256(image).hexdigest(),
        "p_keep": s.p_keep,
        "source_shard": shard,
        "page_url": s.page_url,
        "url": s.url,
    }
    files = {ext: image, "txt": s.text.encode()}
    if s.synthetic_text:
        files["syn.txt"] = s.synthetic_text.encode()
    files["json"] = json.dumps(meta, sort_keys=True).encode()
    return files


class _ShardSequence:
    """Numbered local tars of at most ``per_shard`` samples, opened as needed."""

    def __init__(self, staging: Path, per_shard: int) -> None:
        if per_shard < 1:
            raise ValueError("samples_per_shard must be at least 1")
        self._staging, self._per_shard = staging, per_shard
        self._current: TarWriter | None = None
        self.paths: list[Path] = []
        self.p_keep_sum = 0.0
        self.shards: list[dict[str, Any]] = []

    def add(self, key: str, files: dict[str, bytes]) -> None:
        if self._current is None:
            self._current = TarWriter(self._staging / f"{len(self.paths):05d}.tar")
            self.paths.append(self._current.path)
        self._current.add(key, files)
        if self._current.samples == self._per_shard:
            self._finish()

    def close(self) -> None:
        if self._current is not None:
            self._finish()

    def _finish(self) -> None:
        tar, self._current = self._current, None
        tar.close()
        sha = hashlib.sha256()
        with tar.path.open("rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
        self.shards.append(
            {"path": tar.path.name, "samples": tar.samples, "bytes": tar.path.stat().st_size, "sha256": sha.hexdigest()}
        )
