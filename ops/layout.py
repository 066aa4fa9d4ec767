"""Where each stage keeps its per-shard files in the lake (see the data contract in ARCHITECTURE.md)."""

from __future__ import annotations


def table_path(stage: str, shard: str) -> str:
    """The stage's per-shard decision table: one row per sample, ``uid``, ``kept``, ``reason`` and more."""
    return f"{stage}/{shard}.parquet"


def report_path(stage: str, shard: str) -> str:
    """The stage's per-shard :class:`ops.report.StageReport`, written last: its presence marks the shard done."""
    return f"{stage}/{shard}.report.json"
