"""Synthetic lakes of realistic shape for ``bench/scale.py``, written shard by shard in bounded memory.

* Dedup hash tables (``dedup/hashes`` and ``dedup/details``, the real schemas):
  - ``diverse``: unrelated images, whose pHashes spread like random 64-bit words; each window pHash is the
    image's pHash with a few bits flipped (4 on average, as a window of a real photo is 2-16 bits away); 5% are
    near copies of an earlier image (about one bit flipped, same detail thumbnail), 1% exact copies (same
    pixel digest). Detail thumbnails come from a pool of smooth random images, so the files stay small.
  - ``products``: the generated product photos of :mod:`infra.synthetic.products` drawn straight at 64 px: the
    detail thumbnail, the pHash from its 2x2-pooled 32x32 version, the window pHashes from the real code;
    one in 20 a copy of a product (brightened and noisy, or a crop of it drawn larger).
* curation tables (the MetaCLIP matches ``count_entries`` reads): ``list<int32>`` entry ids per sample,
  Poisson(8) matches (10% none) over a Zipf head of a 500,000-entry list, as MetaCLIP-like metadata gives.
* CLIP score tables: normally distributed float32 scores (mean 0.25, sd 0.05), 2% not scored.
* Download shards for the dataset writer: a webdataset tar of JPEG product photos (128 px) with the crawl table
  and download ledger the writer selects from.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from infra.lake import Lake
from infra.synthetic.products import render
from ops import graph
from ops.curation.stage import CURATION_SCHEMA
from ops.dedup import DedupConfig
from ops.dedup.crops import N_WINDOWS, window_phashes
from ops.dedup.fingerprint import DETAIL_SIDE, contrast, phash_from_pixels
from ops.dedup.layout import details_path, hashes_path
from ops.dedup.shard import DETAILS, hash_schema
from ops.download import LEDGER_SCHEMA, paths
from ops.quality.clip_score import SCHEMA as CLIP_SCHEMA

ENTRIES = 500_000
_POOL = 64  # 256 KiB of distinct thumbnails: within the reach of zstd's window, so the details files stay small
_M = np.uint64((1 << 64) - 1)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 of each value: a counter-based random word, so image ``i`` is the same in any shard."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _sparse(seed: np.ndarray, words: int) -> np.ndarray:
    """Random 64-bit masks with each bit set with probability 2**-words."""
    out = np.full(seed.shape, _M, dtype=np.uint64)
    for k in range(words):
        out &= _mix(seed * np.uint64(8) + np.uint64(k + 1))
    return out


def _hex(ids: np.ndarray, width: int) -> list[str]:
    return [f"{v:0{width}x}" for v in ids.tolist()]


def _pool(seed: int) -> np.ndarray:
    """Smooth random 64x64 grey images: a few random cosine waves each."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:DETAIL_SIDE, 0:DETAIL_SIDE] / DETAIL_SIDE
    freq = rng.uniform(0.5, 6, (_POOL, 6, 2))
    phase = rng.uniform(0, 2 * np.pi, (_POOL, 6))
    amp = rng.uniform(10, 40, (_POOL, 6))
    waves = amp[..., None, None] * np.cos(
        2 * np.pi * (freq[..., 0, None, None] * x + freq[..., 1, None, None] * y) + phase[..., None, None]
    )
    return np.clip(128 + waves.sum(axis=1), 0, 255).astype(np.uint8)


def _write_hashes(lake: Lake, shard: str, columns: dict[str, np.ndarray | list], details: np.ndarray) -> None:
    n = len(columns["uid"])
    table = {
        "uid": columns["uid"],
        "key": _hex(np.arange(n), 9),
        "width": np.full(n, 512, np.int32),
        "height": np.full(n, 512, np.int32),
        "pixel_sha256": columns["sha"],
        "phash": columns["phash"],
        "contrast": columns["contrast"],
        "kept": np.ones(n, dtype=bool),
        "reason": [""] * n,
        "window_phash": pa.FixedSizeListArray.from_arrays(columns["windows"].ravel(), N_WINDOWS).cast(
            pa.list_(pa.uint64())
        ),
    }
    schema = hash_schema(DedupConfig())
    lake.write_parquet(hashes_path(shard), pa.table(table, schema=schema))
    flat = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(DETAIL_SIDE * DETAIL_SIDE), n, [None, pa.py_buffer(np.ascontiguousarray(details).tobytes())]
    )
    lake.write_parquet(details_path(shard), pa.table({"key": table["key"], "detail": flat}, schema=DETAILS))


def diverse_shard(lake: Lake, shard: str, first: int, n: int, seed: int = 0) -> None:
    ids = np.arange(first, first + n, dtype=np.uint64)
    kind = (ids % np.uint64(100)).astype(np.int64)
    near, exact = kind % 20 == 7, kind == 13
    copied = near | exact
    source = np.where(copied, _mix(ids ^ np.uint64(seed)) % np.maximum(ids, np.uint64(1)), ids)
    base = _mix(source ^ np.uint64(seed + 1))
    wins = base[:, None] ^ _sparse(source[:, None] * np.uint64(N_WINDOWS) + np.arange(N_WINDOWS, dtype=np.uint64), 4)
    noise = np.where(near, _sparse(ids ^ np.uint64(seed + 2), 6), np.uint64(0))
    pool = _pool(seed)
    _write_hashes(
        lake,
        shard,
        {
            "uid": _hex(ids, 32),
            "sha": _hex(np.where(exact, source, ids), 64),
            "phash": base ^ noise,
            "contrast": np.full(n, 40.0, np.float32),
            "windows": wins ^ noise[:, None],
        },
        pool[(source % np.uint64(_POOL)).astype(np.int64)],
    )


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def products_shard(lake: Lake, shard: str, first: int, n: int, seed: int = 0) -> None:
    ids = np.arange(first, first + n)
    grey = _grey(render(seed, first, n, DETAIL_SIDE))
    copies = np.flatnonzero(ids % 20 == 7)
    rng = np.random.default_rng([seed, first])
    for c in copies:
        if c % 40 == 7:  # a crop: the same product drawn larger, a 64 px window of it
            big = _grey(render(seed, int(ids[c] - 7), 1, DETAIL_SIDE + 6))[0]
            y, x = rng.integers(0, 7, 2)
            grey[c] = big[y : y + DETAIL_SIDE, x : x + DETAIL_SIDE]
        else:
            grey[c] = grey[c - 7] * 1.08 + rng.normal(0, 1.5, grey[c].shape) if c >= 7 else grey[c]
    details = np.clip(np.round(grey), 0, 255).astype(np.uint8)
    thumbs = details.reshape(n, 32, 2, 32, 2).mean(axis=(2, 4)).round().astype(np.uint8)
    _write_hashes(
        lake,
        shard,
        {
            "uid": _hex(ids.astype(np.uint64), 32),
            "sha": _hex(ids.astype(np.uint64), 64),
            "phash": phash_from_pixels(thumbs),
            "contrast": contrast(thumbs),
            "windows": window_phashes(details),
        },
        details,
    )


def matches_shard(lake: Lake, shard: str, first: int, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng([seed, first])
    lengths = np.where(rng.random(n) < 0.1, 0, rng.poisson(8, n))
    order = np.random.default_rng(seed).permutation(ENTRIES)  # which entry ids are the head
    ids = order[np.minimum(rng.zipf(1.25, int(lengths.sum())) - 1, ENTRIES - 1)].astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    entry_ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
    uids = pa.array(_hex(np.arange(first, first + n, dtype=np.uint64), 1))
    matched = pa.array(lengths > 0)
    reasons = pa.array(np.where(lengths > 0, "", "no_match"), pa.string())
    table = pa.table([uids, entry_ids, matched, reasons], schema=CURATION_SCHEMA)
    lake.write_parquet(graph.stage("curation").table(shard), table)


def scores_shard(lake: Lake, shard: str, first: int, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng([seed, first])
    scores = rng.normal(0.25, 0.05, n).astype(np.float32)
    kept = rng.random(n) >= 0.02
    scores[~kept] = np.nan
    table = {
        "uid": _hex(np.arange(first, first + n, dtype=np.uint64), 1),
        "clip_score": scores,
        "kept": kept,
        "reason": np.where(kept, "", "nan_score").tolist(),
    }
    stage = graph.stage("clip_scores")
    lake.write_parquet(stage.table(shard), pa.table(table, schema=CLIP_SCHEMA))
    lake.write_json(stage.report(shard), {"extra": {"model": "bench-model"}})


def download_shard(lake: Lake, shard: str, first: int, n: int, seed: int = 0) -> None:
    pool = []
    for pixels in render(seed, 0, 64, 128):
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=85)
        pool.append(out.getvalue())
    ids = np.arange(first, first + n)
    uids = _hex(ids.astype(np.uint64), 32)
    keys = _hex(np.arange(n), 9)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard.tar"
        with tarfile.open(path, "w") as tar:
            for i, (uid, key) in enumerate(zip(uids, keys, strict=True)):
                for name, payload in ((f"{key}.jpg", pool[i % len(pool)]), (f"{key}.json", json.dumps({"uid": uid}))):
                    data = payload.encode() if isinstance(payload, str) else payload
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        lake.put_file(path, paths(shard)["tar"])
    urls = [f"https://shop.example/{i}.jpg" for i in ids.tolist()]
    texts = [f"product photo {i}" for i in ids.tolist()]
    crawl = {"uid": uids, "url": urls, "text": texts, "page_url": ["https://shop.example/"] * n, "kept": [True] * n}
    crawl["reason"] = [""] * n
    lake.write_parquet(graph.stage("crawl").table(shard), pa.table(crawl))
    ledger = {f.name: [None] * n for f in LEDGER_SCHEMA}
    ledger.update({"uid": uids, "key": keys, "url": urls, "kept": [True] * n, "reason": [""] * n})
    lake.write_parquet(paths(shard)["ledger"], pa.Table.from_pydict(ledger, schema=LEDGER_SCHEMA))


WRITERS = {
    "diverse": diverse_shard,
    "products": products_shard,
    "matches": matches_shard,
    "scores": scores_shard,
    "download": download_shard,
}


def build(root: str, kind: str, total: int, per_shard: int, seed: int = 0) -> list[str]:
    """Write ``total`` samples of ``kind`` in shards of ``per_shard`` under ``root``; returns the shard names."""
    lake = Lake(root)
    shards = []
    for s, first in enumerate(range(0, total, per_shard)):
        shard = f"{kind}-{s:05d}"
        WRITERS[kind](lake, shard, first, min(per_shard, total - first), seed)
        shards.append(shard)
    return shards
