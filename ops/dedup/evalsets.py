"""Fingerprints of the evaluation images that training data must not contain.

An eval set is a folder of image files (``<name>/<class>/*.png`` or any nesting), in the lake or at any fsspec
URI. Its fingerprints (those of training samples: pixel digest, pHash, contrast, window pHashes and the detail
thumbnail) are cached in the lake under a digest of the fingerprint version and its file listing (paths and
sizes), so rebuilding the index hashes a benchmark once, not on every new shard.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

import fsspec
import numpy as np
import pyarrow as pa

from infra.lake import Lake
from ops.dedup.crops import FINGERPRINT_VERSION, window_phashes
from ops.dedup.fingerprint import DETAIL_SIDE, UndecodableImage, contrast, fingerprint, phash_from_pixels
from ops.dedup.layout import eval_cache_path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

SCHEMA = pa.schema(
    [
        ("eval_set", pa.string()),
        ("path", pa.string()),
        ("pixel_sha256", pa.string()),
        ("phash", pa.uint64()),
        ("contrast", pa.float32()),
        ("window_phash", pa.list_(pa.uint64())),
        ("detail", pa.binary(DETAIL_SIDE * DETAIL_SIDE)),
    ]
)


def _listing(lake: Lake, uri: str) -> tuple[str, list[tuple[str, int]], object]:
    """The set's name, its image files (path relative to the set, size) and a reader for one file."""
    name = PurePosixPath(uri.rstrip("/")).name
    if "://" in uri or uri.startswith("/"):
        fs, root = fsspec.core.url_to_fs(uri.rstrip("/"))
        found = fs.find(root, detail=True)
        files = [(p[len(root) :].lstrip("/"), int(info.get("size") or 0)) for p, info in found.items()]
        files = [f for f in files if PurePosixPath(f[0]).suffix.lower() in IMAGE_SUFFIXES]
        return name, sorted(files), lambda rel: fs.cat_file(f"{root}/{rel}")
    prefix = uri.strip("/")
    rels = [r for r in lake.list(prefix) if PurePosixPath(r).suffix.lower() in IMAGE_SUFFIXES]
    files = [(r[len(prefix) :].lstrip("/"), int(lake.fs.size(lake.path(r)))) for r in rels]
    return name, files, lambda rel: lake.read_bytes(f"{prefix}/{rel}")


def eval_fingerprints(lake: Lake, uris: tuple[str, ...]) -> tuple[pa.Table, dict[str, int]]:
    """One row per decodable eval image, and per-set counts (images, undecodable) for the index summary."""
    tables: list[pa.Table] = []
    stats: dict[str, int] = {}
    for uri in uris:
        name, files, read = _listing(lake, uri)
        digest = hashlib.sha256(f"{FINGERPRINT_VERSION}:{files!r}".encode()).hexdigest()[:16]
        cache = eval_cache_path(name, digest)
        if lake.exists(cache):
            table = lake.read_parquet(cache)
        else:
            paths, shas, thumbs, details = [], [], [], []
            for rel, _size in files:
                try:
                    found = fingerprint(read(rel))
                except UndecodableImage:
                    continue
                paths.append(rel)
                shas.append(found.pixel_sha256)
                thumbs.append(found.thumb)
                details.append(found.detail)
            stack = np.stack(thumbs) if thumbs else np.zeros((0, 32, 32), dtype=np.uint8)
            fine = np.stack(details) if details else np.zeros((0, DETAIL_SIDE, DETAIL_SIDE), dtype=np.uint8)
            table = pa.table(
                {
                    "eval_set": [name] * len(paths),
                    "path": paths,
                    "pixel_sha256": shas,
                    "phash": phash_from_pixels(stack),
                    "contrast": contrast(stack),
                    "window_phash": window_phashes(fine).tolist(),
                    "detail": [d.tobytes() for d in fine],
                },
                schema=SCHEMA,
            )
            lake.write_parquet(cache, table)
        stats[f"eval.{name}.images"] = len(files)
        stats[f"eval.{name}.undecodable"] = len(files) - table.num_rows
        tables.append(table)
    return (pa.concat_tables(tables) if tables else SCHEMA.empty_table()), stats
