"""Where each stage keeps its per-shard files in the lake (see the data contract in ARCHITECTURE.md)."""

from __future__ import annotations

# Per-shard stages in pipeline order; each writes ``<stage>/<shard>.parquet`` with ``uid``, ``kept``, ``reason``.
STAGES = ("crawl", "download", "dedup", "curation", "quality", "recaption")


def table_path(stage: str, shard: str) -> str:
    """The stage's per-shard decision table: one row per sample, ``uid``, ``kept``, ``reason`` and more."""
    return f"{stage}/{shard}.parquet"


def report_path(stage: str, shard: str) -> str:
    """The stage's per-shard :class:`ops.report.StageReport`, written last: its presence marks the shard done."""
    return f"{stage}/{shard}.report.json"


def shard_of_table(stage: str, rel: str) -> str | None:
    """The shard of a lake path if it is that stage's per-shard decision table, else None."""
    prefix = f"{stage}/"
    if not rel.startswith(prefix) or not rel.endswith(".parquet") or "/" in rel[len(prefix) :]:
        return None
    return rel[len(prefix) : -len(".parquet")]
