"""dataset: write the final training shards from the samples every stage kept, balanced, under a content-derived
version.

Images are read once, streamed from ``download/<shard>.tar`` into local staging tars of ``samples_per_shard``
samples; only one shard's (small) stage tables and one sample's bytes are in memory at a time. The version is a
SHA-256 over the writer settings and, in write order, every sample's key and the digest of each of its files,
so it names exactly the bytes written: same inputs and settings, same version (the manifest's ledger counts
are a report, not content: they are not hashed). When ``dataset/<version>/``
already has its manifest, nothing is published; otherwise the tars are published atomically through the lake
and ``manifest.json`` last, so a reader that sees the manifest sees a complete dataset.

Output samples are keyed by ``uid`` (``<uid>.jpg``, ``.txt`` raw caption, ``.syn.txt`` synthetic caption when
recaption wrote one, ``.json`` with uid, p_keep, sha256 and lineage, plus a URL list's own uid (``source_uid``) and
carried columns (``source``) where the sample came from one), in input-shard order then tar order. Beside
the tars, ``decisions/<shard>.parquet`` records for every sample the stages kept whether balancing kept it (with
its ``p_keep``) or why not, so "what happened to sample X" has an answer here too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infra.lake import Lake
from ops import graph
from ops.curation.config import BalanceConfig
from ops.curation.reasons import BALANCED_OUT
from ops.curation.stage import load_entry_counts
from ops.dataset.selection import Balance, Selected, StageCounts, StaleShard, select_shard
from ops.dataset.tars import TarWriter
from ops.download import iter_tar_samples
from ops.report import StageReport

FORMAT = 2
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
MISSING_IMAGE = "missing_image"
LATEST = "dataset/latest.json"  # the version the dataset stage published last, for readers such as trace
REASONS: tuple[str, ...] = (BALANCED_OUT, MISSING_IMAGE)


@dataclass(frozen=True)
class DatasetConfig:
    """Writer settings; all of them are part of the version.

    ``through`` names the flowing stage whose kept samples are written (default: the last one, i.e. everything
    every stage kept; ``download`` gives the raw pool). ``online_curation`` writes every sample with
    ``p_keep > 0`` and leaves MetaCLIP's draw to the data loader, each epoch.
    """

    samples_per_shard: int = 10_000
    online_curation: bool = False
    through: str | None = None


@dataclass
class DatasetResult:
    version: str
    manifest_path: str
    manifest: dict[str, Any]
    report: StageReport
    written: bool  # False when this version was already in the lake


def dataset_prefix(version: str) -> str:
    return f"dataset/{version}"


def decisions_path(version: str, shard: str) -> str:
    """One shard's balancing and writing decisions in a dataset version: ``uid, p_keep, kept, reason``."""
    return f"{dataset_prefix(version)}/decisions/{shard}.parquet"


def write_dataset(
    lake: Lake, shards: list[str], config: DatasetConfig, balance: BalanceConfig | None = None
) -> DatasetResult:
    """Select, balance, stream and publish; see the module docstring for the guarantees.

    With ``balance`` (and curation in the chain) MetaCLIP's balancing is applied over the current entry counts. A
    shard whose stages disagree (one re-ran, a later one not yet) is left out, named in the manifest's
    ``shards_left_out`` with the stage to re-run, rather than read half old, half new.
    """
    through = config.through or graph.last_flowing().name
    chain = [s.name for s in graph.flow(through)]
    report = StageReport(stage="dataset", shard="all")
    counts: dict[str, StageCounts] = {}
    balanced = None
    if balance is not None and "curation" in chain:
        entry_counts, _ = load_entry_counts(lake)
        balanced = Balance(entry_counts, balance.threshold(entry_counts), balance, config.online_curation)
    settings = {
        "format": FORMAT,
        **asdict(config),
        "through": through,
        "balance": asdict(balance) if balanced is not None else None,
        "t": balanced.t if balanced is not None else None,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    staging = Path(tempfile.mkdtemp(prefix="clipfoundry-dataset-"))
    decisions: dict[str, Path] = {}
    try:
        with report.timed():
            out = _ShardSequence(staging, config.samples_per_shard)
            left_out: dict[str, str] = {}
            for shard in sorted(shards):
                try:
                    selected, decided = select_shard(lake, shard, through, balanced, counts)
                except StaleShard as err:
                    left_out[shard] = str(err)
                    continue
                written = _copy_shard(lake, shard, selected, out, digest)
                written_uids = pa.array(sorted(written), pa.string())
                missing = pc.and_(decided["kept"], pc.invert(pc.is_in(decided["uid"], value_set=written_uids)))
                decided = decided.set_column(2, "kept", pc.and_(decided["kept"], pc.invert(missing)))
                decided = decided.set_column(3, "reason", pc.if_else(missing, MISSING_IMAGE, decided["reason"]))
                report.count(decided["kept"].to_pylist(), decided["reason"].to_pylist())
                decisions[shard] = staging / f"decisions-{shard}.parquet"
                pq.write_table(decided, decisions[shard])
            out.close()
            version = digest.hexdigest()[:16]
            manifest = {
                "version": version,
                "settings": settings,
                "input_shards": sorted(set(shards) - set(left_out)),
                "shards_left_out": left_out,
                "stages": {stage: counts[stage].to_dict() for stage in (*chain, "balance") if stage in counts},
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
                for shard, local in decisions.items():
                    lake.put_file(local, decisions_path(version, shard))
                lake.write_json(manifest_path, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.extra.update(version=version, shards=len(out.shards), published=written_now)
    if balanced is not None:
        report.extra["t"] = balanced.t
    report.check()
    return DatasetResult(version, manifest_path, manifest, report, written_now)


def publish_dataset(
    lake: Lake, shards: list[str], config: DatasetConfig, balance: BalanceConfig | None = None
) -> DatasetResult:
    """The dataset stage: write the dataset, then point :data:`LATEST` at it for readers such as ``trace``."""
    result = write_dataset(lake, shards, config, balance)
    lake.write_json(LATEST, {"version": result.version, "manifest": result.manifest_path})
    return result


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
    if s.source_uid is not None:
        meta["source_uid"] = s.source_uid
    if s.source_fields is not None:
        meta["source"] = json.loads(s.source_fields)
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
