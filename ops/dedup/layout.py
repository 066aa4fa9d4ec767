"""Where the dedup stage keeps its files in the lake.

``dedup/hashes/<shard>.parquet`` (with its detail thumbnails, ``dedup/details/<shard>.parquet``) is written
once per shard and never rewritten by the global index, which is what makes the index incremental;
``dedup/index/`` is rebuilt from those files; ``dedup/<shard>.parquet`` is the per-shard decision table of the
data contract.
"""

from __future__ import annotations

from ops import graph

INDEX = "dedup/index"
SUMMARY = f"{INDEX}/summary.json"


def hashes_path(shard: str) -> str:
    return graph.stage("image_hashes").table(shard)


def details_path(shard: str) -> str:
    """The 64x64 detail thumbnails of one shard's decodable images (``key``, ``detail``), written by
    ``hash_shard`` beside its hashes; the index reads it only for the images of crop or pHash candidates."""
    return f"dedup/details/{shard}.parquet"


def decisions_path(shard: str) -> str:
    """The index's decisions for one shard's decodable samples, read by :func:`ops.dedup.dedup_shard`."""
    return f"{INDEX}/decisions/{shard}.parquet"


def eval_cache_path(name: str, listing_digest: str) -> str:
    """Fingerprints of one eval set, keyed by its file listing, so an unchanged set is hashed once."""
    return f"{INDEX}/eval/{name}-{listing_digest}.parquet"
