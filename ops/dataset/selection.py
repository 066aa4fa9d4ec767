"""Which samples of a shard reach the dataset: those every configured stage kept, with what the stages said.

Each stage's per-shard table has ``uid``, ``kept`` and ``reason``; a stage that only annotates (a table with no
``kept`` column, as recaption may write) passes every row. With online curation the curation draw is left to
the data loader: every sample curation gave a chance (``p_keep > 0``) passes, and ``p_keep`` travels with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from infra.lake import Lake
from ops.layout import table_path

STAGES = ("crawl", "download", "dedup", "curation", "quality", "recaption")


class MissingStageError(RuntimeError):
    """A configured stage has not written its table for some shard: the dataset would silently skip a filter."""


@dataclass
class StageCounts:
    """What one stage's tables say, summed over shards: the manifest's copy of the ledger."""

    rows_in: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, table: pa.Table) -> None:
        self.rows_in += table.num_rows
        if "kept" not in table.column_names:
            self.rows_kept += table.num_rows
            return
        kept = table["kept"].fill_null(False)
        self.rows_kept += pc.sum(kept).as_py() or 0
        self.dropped.update(table.filter(pc.invert(kept))["reason"].fill_null("").to_pylist())

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


def present_stages(lake: Lake, shards: list[str], candidates: tuple[str, ...] = STAGES) -> tuple[str, ...]:
    """The candidate stages whose table exists for every shard; a stage present for only some shards is an error."""
    out = []
    for stage in candidates:
        have = [lake.exists(table_path(stage, s)) for s in shards]
        if all(have):
            out.append(stage)
        elif any(have):
            missing = [s for s, h in zip(shards, have, strict=True) if not h]
            raise MissingStageError(f"{stage} has not run on shards {missing[:5]} ({len(missing)} in all)")
    return tuple(out)


def select_shard(
    lake: Lake, shard: str, stages: tuple[str, ...], counts: dict[str, StageCounts], online_curation: bool
) -> dict[str, Selected]:
    """uid → :class:`Selected` for the samples every stage passed; adds each stage's table to ``counts``."""
    if stages[:2] != ("crawl", "download"):
        raise ValueError(f"stages must start with crawl, download: {stages}")
    tables = {}
    for stage in stages:
        rel = table_path(stage, shard)
        if not lake.exists(rel):
            raise MissingStageError(f"{rel} is missing")
        tables[stage] = lake.read_parquet(rel)
        counts.setdefault(stage, StageCounts()).add(tables[stage])
    passing = None
    for stage, table in tables.items():
        if stage == "curation" and online_curation:
            ok = pc.greater(table["p_keep"].fill_null(0.0), 0.0)
        elif "kept" in table.column_names:
            ok = table["kept"].fill_null(False)
        else:
            continue
        uids = set(table.filter(ok)["uid"].to_pylist())
        passing = uids if passing is None else passing & uids
    p_keep = _column(tables.get("curation"), "p_keep")
    synthetic = _column(tables.get("recaption"), "synthetic_text")
    crawl = tables["crawl"]
    page_urls = crawl["page_url"].to_pylist() if "page_url" in crawl.column_names else [None] * crawl.num_rows
    out = {}
    for uid, text, page_url, url in zip(
        crawl["uid"].to_pylist(), crawl["text"].to_pylist(), page_urls, crawl["url"].to_pylist(), strict=True
    ):
        if uid in passing:
            out[uid] = Selected(text, page_url, url, p_keep.get(uid), synthetic.get(uid))
    return out


def _column(table: pa.Table | None, name: str) -> dict:
    if table is None or name not in table.column_names:
        return {}
    return dict(zip(table["uid"].to_pylist(), table[name].to_pylist(), strict=True))
