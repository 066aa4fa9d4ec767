""" "What happened to sample X?": every stage's decision about one uid, read from the tables the stages wrote.

Each per-shard stage table is keyed by uid and says kept or dropped with a reason, so the answer is a scan of
those tables with a uid filter (parquet pushes the filter down to row groups); no extra bookkeeping is kept.
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from infra.lake import Lake
from ops.layout import STAGES, shard_of_table


def trace(lake: Lake, uid: str, shards: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per (stage, shard, row) that mentions ``uid``, in pipeline order."""
    found: list[dict[str, Any]] = []
    for stage in STAGES:
        for rel in lake.list(stage):
            shard = shard_of_table(stage, rel)
            if shard is None or (shards is not None and shard not in shards):
                continue
            with lake.open(rel) as f:
                table = pq.read_table(f, filters=[("uid", "=", uid)])
            if not table.num_rows:
                continue
            for row in table.filter(pc.field("uid") == uid).to_pylist():
                found.append({"stage": stage, "shard": shard, **_summarise(row)})
    return found


def _summarise(row: dict[str, Any]) -> dict[str, Any]:
    """Decision columns first; long values (embeddings, lists) shortened for a human reader."""
    out: dict[str, Any] = {"kept": row.pop("kept", None), "reason": row.pop("reason", "") or ""}
    row.pop("uid", None)
    for key, value in row.items():
        if isinstance(value, list | bytes) and len(value) > 8:
            value = f"<{len(value)} items>"
        out[key] = value
    return out
