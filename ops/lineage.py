""" "What happened to sample X?": every stage's decision about one uid, read from the tables the stages wrote.

Each per-shard stage of :mod:`ops.graph` keeps a table keyed by uid that says kept or dropped with a reason, and
the newest dataset keeps the balancing decisions per shard, so the answer is a scan of exactly those tables with
a uid filter (parquet pushes the filter down to row groups); no extra bookkeeping is kept and no other file in
the lake is ever read as if it were one.
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from infra.lake import Lake
from ops import graph
from ops.dataset.writer import LATEST, decisions_path
from ops.sources import registry


def trace(lake: Lake, uid: str, shards: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per (stage, shard, row) that mentions ``uid``, in pipeline order."""
    shards = list(registry(lake)) if shards is None else shards
    tables = [(s.name, shard, s.table(shard)) for s in graph.shard_stages() for shard in shards]
    if lake.exists(LATEST):
        version = lake.read_json(LATEST)["version"]
        tables += [("dataset", shard, decisions_path(version, shard)) for shard in shards]
    found: list[dict[str, Any]] = []
    for stage, shard, rel in tables:
        if not lake.exists(rel):
            continue
        with lake.open(rel) as f:
            table = pq.read_table(f, filters=[("uid", "=", uid)])
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
