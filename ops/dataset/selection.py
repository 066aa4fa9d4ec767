"""Which samples of a shard reach the dataset, and with what: the chain of flowing stages, then MetaCLIP balancing.

The chain is declared in :mod:`ops.graph`: each flowing stage took exactly what the one before it kept, so the
samples the last one kept passed every stage. Balancing is decided here rather than per shard because
``p_keep = 1 − Π(1 − min(1, t / count_e))`` depends on the entry counts over ALL shards, which every new shard
changes: computed now from the stored matches and the current counts, it is always current and no shard's
table goes stale. With online curation every sample with ``p_keep > 0`` is written and the data loader redraws
each epoch; otherwise the draw is made here, fixed by (seed, uid).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infra.lake import Lake
from ops import graph
from ops.curation.config import BalanceConfig
from ops.curation.reasons import BALANCED_OUT
from ops.curation.stage import balance_draws, shard_p_keep


@dataclass
class StageCounts:
    """What one stage's tables say, summed over shards: the manifest's copy of the ledger."""

    rows_in: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, kept: pa.ChunkedArray | pa.Array, reason: pa.ChunkedArray | pa.Array) -> None:
        kept = kept.fill_null(False)
        self.rows_in += len(kept)
        self.rows_kept += pc.sum(kept).as_py() or 0
        self.dropped.update(pc.filter(reason.fill_null(""), pc.invert(kept)).to_pylist())

    def to_dict(self) -> dict:
        return {"rows_in": self.rows_in, "rows_kept": self.rows_kept, "dropped": dict(sorted(self.dropped.items()))}


@dataclass(frozen=True)
class Selected:
    """One sample's text and lineage, looked up by uid while its image streams past."""

    text: str
    page_url: str | None
    url: str
    p_keep: float | None
    synthetic_text: str | None
    source_uid: str | None = None  # a URL list's own uid (DataComp's)
    source_fields: str | None = None  # a URL list's carried columns, a JSON object


@dataclass(frozen=True)
class Balance:
    """The global side of balancing, computed once per dataset: entry counts and the t they give."""

    counts: np.ndarray
    t: float
    config: BalanceConfig
    online: bool


class StaleShard(ValueError):
    """A stage of the shard's chain decided on samples its input no longer keeps: it has to run again first."""


def select_shard(
    lake: Lake, shard: str, through: str, balance: Balance | None, counts: dict[str, StageCounts]
) -> tuple[dict[str, Selected], pa.Table]:
    """uid → :class:`Selected` for the samples that pass, and the shard's balancing decisions (uid, p_keep,
    kept, reason) for every sample the chain kept; adds each stage's table to ``counts``.

    Raises :class:`StaleShard`, before counting anything, when a stage's rows are not what the stage before it
    kept (that stage re-ran since): reading on would mix two versions of the shard.
    """
    chain = graph.flow(through)
    tables = {stage.name: lake.read_parquet(stage.table(shard)) for stage in chain}
    for before, stage in pairwise(chain):
        kept = tables[before.name].filter(pc.field("kept"))["uid"]
        if not kept.equals(tables[stage.name]["uid"]):
            raise StaleShard(f"{shard}: {stage.name} decided on an older {before.name} table; re-run {stage.name}")
    for stage in chain:
        counts.setdefault(stage.name, StageCounts()).add(tables[stage.name]["kept"], tables[stage.name]["reason"])
    last = tables[chain[-1].name]
    passing = last.filter(pc.field("kept"))["uid"].combine_chunks()
    n = len(passing)
    p = np.ones(n)
    kept = np.ones(n, dtype=bool)
    if balance is not None and "curation" in tables:
        uids, all_p = shard_p_keep(lake, shard, balance.counts, balance.t)
        p = all_p[pc.index_in(passing, value_set=uids).to_numpy(zero_copy_only=False)]
        kept = p > 0 if balance.online else balance_draws(passing, p, balance.config)
    decisions = pa.table(
        {
            "uid": passing,
            "p_keep": pa.array(p if balance is not None else [None] * n, pa.float64()),
            "kept": pa.array(kept),
            "reason": pa.array(np.where(kept, "", BALANCED_OUT), pa.string()),
        }
    )
    counts.setdefault("balance", StageCounts()).add(decisions["kept"], decisions["reason"])
    synthetic = _column(tables.get("recaption"), "synthetic_text")
    crawl = tables["crawl"]
    p_of = dict(zip(passing.to_pylist(), decisions["p_keep"].to_pylist(), strict=True))
    wanted = set(pc.filter(passing, pa.array(kept)).to_pylist())
    out = {}
    listed = [
        crawl[name].to_pylist() if name in crawl.column_names else [None] * crawl.num_rows
        for name in ("source_uid", "source_fields")
    ]
    for uid, text, page_url, url, source_uid, source_fields in zip(
        crawl["uid"].to_pylist(),
        crawl["text"].to_pylist(),
        crawl["page_url"].to_pylist(),
        crawl["url"].to_pylist(),
        *listed,
        strict=True,
    ):
        if uid in wanted:
            out[uid] = Selected(text, page_url, url, p_of[uid], synthetic.get(uid), source_uid, source_fields)
    return out, decisions


def _column(table: pa.Table | None, name: str) -> dict:
    if table is None or name not in table.column_names:
        return {}
    return dict(zip(table["uid"].to_pylist(), table[name].to_pylist(), strict=True))
