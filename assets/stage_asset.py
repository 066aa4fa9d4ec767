"""The ``@asset`` decorator of a declared stage: its key, dependencies, partitions, group, description, checks and
pool all come from :mod:`ops.graph`, so an asset module only binds the stage's op to its resources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagster import AssetKey, AssetsDefinition, BackfillPolicy, asset

from assets.checks import conservation_spec, drop_share_spec
from ops import graph
from pipelines.partitions import shards


def stage_asset(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """``@asset`` for stage ``name``; per-shard stages get the shard partitions, single-run backfills (so a range
    of shards runs as one run), the blocking ``rows_conserved`` check and the ``drop_share`` warning; a global
    stage's own checks come as ``checks``."""
    stage = graph.stage(name)
    checks = [conservation_spec(name), drop_share_spec(name)] if stage.per_shard else kwargs.pop("checks", None)
    return asset(
        name=name,
        deps=[AssetKey(d) for d in stage.deps],
        partitions_def=shards if stage.per_shard else None,
        backfill_policy=BackfillPolicy.single_run() if stage.per_shard else None,
        check_specs=checks,
        group_name=stage.group,
        description=stage.description,
        pool=stage.pool,
        **kwargs,
    )
