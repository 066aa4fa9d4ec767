"""The whole graph as one Dagster asset backfill: every per-shard stage for the given shards, every global step.

The UI's "Materialize all", the refresh sensor and ``clipfoundry materialize`` all submit this same backfill, and
Dagster's backfill daemon runs it in dependency order across the mixed partitioning: each shard's stages up to a
global step, the global step once, then the next stages.
"""

from __future__ import annotations

from collections.abc import Iterable

from dagster import AssetKey
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.events import AssetKeyPartitionKey

from ops import graph


def whole_graph(asset_graph: BaseAssetGraph, shards: Iterable[str]) -> AssetGraphSubset:
    """Every declared stage: per-shard ones for ``shards``, global ones once."""
    shards = list(shards)
    wanted = set()
    for stage in graph.stages().values():
        key = AssetKey(stage.name)
        if stage.per_shard:
            wanted.update(AssetKeyPartitionKey(key, shard) for shard in shards)
        else:
            wanted.add(AssetKeyPartitionKey(key, None))
    return AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)
