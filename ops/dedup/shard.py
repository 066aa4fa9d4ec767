"""The per-shard dedup ops: fingerprint a downloaded shard once, and later project the global index onto it.

``hash_shard`` is the only step that reads pixels. It streams the shard's webdataset tar, decodes every image
the download ledger kept exactly once, and writes ``dedup/hashes/<shard>.parquet`` (pixel digest, pHash,
contrast, window pHashes) and ``dedup/details/<shard>.parquet`` (the 64x64 detail thumbnails, 4 KiB an image,
kept apart so that the index reads them only for candidate pairs). The global index is built
from these files alone, so adding a shard hashes that shard only. ``dedup_shard`` then writes the stage's
decision table for the shard from the index: every sample that entered the stage, kept or dropped with a reason.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infra.lake import Lake
from ops import graph
from ops.dedup import reasons as R
from ops.dedup.config import DedupConfig
from ops.dedup.crops import FINGERPRINT_VERSION, window_phashes
from ops.dedup.fingerprint import DETAIL_SIDE, UndecodableImage, contrast, fingerprint, phash_from_pixels
from ops.dedup.layout import SUMMARY, decisions_path, details_path, hashes_path
from ops.download import iter_tar_samples
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")

HASH_FIELDS = [
    ("uid", pa.string()),
    ("key", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("pixel_sha256", pa.string()),
    ("phash", pa.uint64()),
    ("contrast", pa.float32()),
    ("kept", pa.bool_()),
    ("reason", pa.string()),
    ("window_phash", pa.list_(pa.uint64())),
]

DETAILS = pa.schema([("key", pa.string()), ("detail", pa.binary(DETAIL_SIDE * DETAIL_SIDE))])

SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("key", pa.string()),
        ("pixel_sha256", pa.string()),
        ("phash", pa.uint64()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
        ("duplicate_of", pa.string()),
        ("duplicate_of_shard", pa.string()),
        ("cluster_size", pa.int64()),
    ]
)


def hash_schema(config: DedupConfig) -> pa.Schema:
    """The hash table's schema; the fingerprint version and the embedding model are recorded so the index can
    refuse tables it cannot compare."""
    fields = list(HASH_FIELDS)
    if config.semantic:
        fields.append(("embedding", pa.list_(pa.float32())))
    meta = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "embed_model": config.embed_model or "",
        "embed_pretrained": config.embed_pretrained or "",
    }
    return pa.schema(fields, metadata=meta)


class _Hasher:
    """Fingerprints (and embeds) images a batch at a time, so a batch of decoded images is all that is held."""

    def __init__(self, config: DedupConfig) -> None:
        self._config = config
        self.rows: dict[str, dict] = {}
        self.details: dict[str, bytes] = {}
        self._keys: list[str] = []
        self._thumbs: list[np.ndarray] = []
        self._details: list[np.ndarray] = []
        self._images: list = []

    def add(self, key: str, data: bytes) -> None:
        try:
            found = fingerprint(data)
        except UndecodableImage:
            self.rows[key] = {"reason": R.UNDECODABLE}
            return
        image, sha = found.image, found.pixel_sha256
        self.rows[key] = {"width": image.width, "height": image.height, "pixel_sha256": sha, "reason": ""}
        self._keys.append(key)
        self._thumbs.append(found.thumb)
        self._details.append(found.detail)
        if self._config.semantic:
            self._images.append(image)
        if len(self._keys) >= self._config.hash_batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._keys:
            return
        thumbs, details = np.stack(self._thumbs), np.stack(self._details)
        hashes, spread = phash_from_pixels(thumbs).tolist(), contrast(thumbs).tolist()
        windows = window_phashes(details).tolist()
        for key, value, level, inside, detail in zip(self._keys, hashes, spread, windows, details, strict=True):
            self.rows[key].update(phash=value, contrast=level, window_phash=inside)
            self.details[key] = detail.tobytes()
        if self._config.semantic:
            from ops.dedup.embed import embed_images  # torch and open_clip: only when semantic dedup is on

            c = self._config
            vectors = embed_images(self._images, c.embed_model, c.embed_pretrained, c.embed_batch_size)
            for key, vector in zip(self._keys, vectors, strict=True):
                self.rows[key]["embedding"] = vector.tolist()
        self._keys, self._thumbs, self._details, self._images = [], [], [], []


def hash_shard(lake: Lake, shard: str, config: DedupConfig) -> StageReport:
    """Fingerprint the download-kept samples of one shard into ``dedup/hashes/<shard>.parquet``."""

    def decide(samples: pa.Table) -> Decisions:
        uids, keys = samples["uid"].to_pylist(), samples["key"].to_pylist()
        hasher = _Hasher(config)
        for key, files in iter_tar_samples(lake, shard):
            image = next((files[ext] for ext in IMAGE_EXTENSIONS if ext in files), None)
            if image is not None and key not in hasher.rows:
                hasher.add(key, image)
        hasher.flush()
        schema = hash_schema(config)
        columns: dict[str, list] = {field.name: [] for field in schema}
        for uid, key in zip(uids, keys, strict=True):
            row = hasher.rows.get(key, {"reason": R.MISSING_IMAGE})
            columns["uid"].append(uid)
            columns["key"].append(key)
            columns["kept"].append(row["reason"] == "")
            for name in columns:
                if name not in ("uid", "key", "kept"):
                    columns[name].append(row.get(name))
        details = {"key": list(hasher.details), "detail": list(hasher.details.values())}
        lake.write_parquet(details_path(shard), pa.Table.from_pydict(details, schema=DETAILS))
        return Decisions(pa.Table.from_pydict(columns, schema=schema), extra={"semantic": config.semantic})

    return run_shard_stage(lake, graph.stage("image_hashes"), shard, decide, columns=["key"])


def dedup_shard(lake: Lake, shard: str, config: DedupConfig) -> StageReport:
    """Write ``dedup/<shard>.parquet`` and its report from the shard's hashes and the global index."""

    def decide(samples: pa.Table) -> Decisions:
        summary = lake.read_json(SUMMARY)
        if shard not in summary["shards"]:
            raise ValueError(f"shard {shard!r} is not in the dedup index; rebuild the index with it")
        if summary["config_digest"] != config.digest():
            raise ValueError("the dedup index was built with another config; rebuild it with this one")
        hashes = lake.read_parquet(hashes_path(shard), columns=["uid", "key", "pixel_sha256", "phash", "reason"])
        if hashes["uid"].to_pylist() != samples["uid"].to_pylist():
            raise ValueError(f"the image hashes of {shard!r} are older than its download ledger; re-run image_hashes")
        decisions = lake.read_parquet(decisions_path(shard))
        at = pc.index_in(hashes["key"], value_set=decisions["key"])
        decoded = pc.equal(hashes["reason"], "")
        if pc.any(pc.and_(decoded, pc.is_null(at))).as_py():
            raise ValueError(f"the dedup index lacks decisions for some samples of {shard!r}; rebuild it")
        picked = decisions.take(at)
        kept = pc.fill_null(picked["kept"], False)
        reason = pc.if_else(decoded, picked["reason"], hashes["reason"])
        table = pa.table(
            {
                "uid": hashes["uid"],
                "key": hashes["key"],
                "pixel_sha256": hashes["pixel_sha256"],
                "phash": hashes["phash"],
                "kept": kept,
                "reason": reason,
                "duplicate_of": picked["duplicate_of"],
                "duplicate_of_shard": picked["duplicate_of_shard"],
                "cluster_size": picked["cluster_size"],
            },
            schema=SCHEMA,
        )
        elsewhere = pc.and_(
            pc.not_equal(pc.fill_null(picked["duplicate_of_shard"], shard), shard),
            pc.not_equal(reason, R.EVAL_CONTAMINATION),
        )
        extra = {
            "duplicates_in_other_shards": pc.sum(pc.and_(pc.invert(kept), elsewhere)).as_py() or 0,
            "index_config_digest": summary["config_digest"],
        }
        return Decisions(table, extra=extra)

    return run_shard_stage(lake, graph.stage("dedup"), shard, decide)
