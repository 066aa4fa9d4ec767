"""The dedup stage: exact, near-duplicate and (optionally) semantic dedup across all shards, and eval decontamination.

Three ops, in order: :func:`hash_shard` fingerprints one shard's images (the only step that reads pixels),
:func:`build_index` compares every shard's fingerprints at once and decides every sample, :func:`dedup_shard`
writes one shard's decision table from the index. Modules are named after what they do: ``fingerprint``
(pixel digest, pHash, detail thumbnail), ``crops`` (window pHashes and the aligned detail check that finds
crops), ``hamming`` (radius search), ``embed`` (open_clip embeddings), ``evalsets``, ``index``, ``shard``,
``reasons``, ``config``, ``layout``.
"""

from ops.dedup.config import DedupConfig
from ops.dedup.index import build_index, cluster_size_histogram
from ops.dedup.reasons import REASONS
from ops.dedup.shard import SCHEMA, dedup_shard, hash_shard

__all__ = ["REASONS", "SCHEMA", "DedupConfig", "build_index", "cluster_size_histogram", "dedup_shard", "hash_shard"]
