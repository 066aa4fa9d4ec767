"""The curation stage over the lake: per-shard matching, the global entry counts, per-shard balancing.

``match_shard`` reads the samples that survived upstream (the dedup table when the shard has one, else the
download ledger), joins their texts from the crawl table, and writes ``curation/matches/<shard>.parquet`` with
one row per sample, an empty ``entry_ids`` list for a text that matched nothing. ``count_entries`` sums the
match files of all shards into ``curation/entry_counts.parquet``. ``balance_shard`` turns one shard's matches
and the global counts into ``curation/<shard>.parquet``: every sample that entered curation, its ``p_keep``,
kept or dropped as ``no_match`` or ``balanced_out``. Each step writes its report last.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infra.lake import Lake
from ops.curation import reasons as R
from ops.curation.balancing import (
    draws,
    expected_kept_per_entry,
    head_tail,
    p_keep,
    summary,
    threshold_for_tail_fraction,
)
from ops.curation.matching import MATCHES_TYPE, Matcher, fingerprint
from ops.layout import report_path, table_path
from ops.report import StageReport

METADATA = "curation/metadata.json"
ENTRY_COUNTS = "curation/entry_counts.parquet"
MATCHES_STAGE = "curation/matches"

MATCHES_SCHEMA = pa.schema([("uid", pa.string()), ("entry_ids", MATCHES_TYPE)])
COUNTS_SCHEMA = pa.schema([("entry_id", pa.int32()), ("entry", pa.string()), ("count", pa.int64())])
CURATION_SCHEMA = pa.schema(
    [("uid", pa.string()), ("p_keep", pa.float64()), ("kept", pa.bool_()), ("reason", pa.string())]
)


def curation_input(lake: Lake, shard: str) -> tuple[pa.Table, str]:
    """(uid, text) of the shard's samples that survived upstream, in upstream order, and which table said so."""
    upstream = "dedup" if lake.exists(table_path("dedup", shard)) else "download"
    ledger = lake.read_parquet(table_path(upstream, shard), columns=["uid", "kept"])
    uids = ledger.filter(pc.field("kept"))["uid"].combine_chunks()
    crawl = lake.read_parquet(table_path("crawl", shard), columns=["uid", "text", "kept"]).filter(pc.field("kept"))
    where = pc.index_in(uids, value_set=crawl["uid"].combine_chunks())
    if where.null_count:
        raise ValueError(f"{shard}: {where.null_count} {upstream} uids have no kept crawl row to take a text from")
    texts = crawl["text"].combine_chunks().take(where)
    return pa.table({"uid": uids.cast(pa.string()), "text": texts}), upstream


def match_shard(lake: Lake, shard: str, metadata: Matcher | Sequence[str]) -> StageReport:
    """Match the shard's surviving texts; rows in = matched (kept) + ``no_match``."""
    report = StageReport(stage="curation_match", shard=shard)
    with report.timed():
        matcher = metadata if isinstance(metadata, Matcher) else Matcher(metadata)
        samples, upstream = curation_input(lake, shard)
        entry_ids = matcher.match(samples["text"])
        lake.write_parquet(
            f"{MATCHES_STAGE}/{shard}.parquet",
            pa.table([samples["uid"], entry_ids], schema=MATCHES_SCHEMA),
        )
        n_matched = pc.list_value_length(entry_ids).to_numpy()
        matched = n_matched > 0
    report.rows_in = len(matched)
    report.rows_kept = int(matched.sum())
    report.dropped[R.NO_MATCH] = report.rows_in - report.rows_kept
    report.extra = {
        "upstream": upstream,
        "matches": int(n_matched.sum()),
        "entries": matcher.n_entries,
        "metadata_sha": matcher.fingerprint,
    }
    report.check()
    lake.write_json(report_path(MATCHES_STAGE, shard), report.to_dict())
    return report


def _offsets_and_values(entry_ids: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """CSR view of a ``list<int32>`` column (robust to chunking and slicing)."""
    lengths = pc.list_value_length(entry_ids).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(entry_ids)
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return np.concatenate([[0], np.cumsum(lengths)]), values.to_numpy().astype(np.int64)


def match_files(lake: Lake) -> list[str]:
    return [p for p in lake.list(MATCHES_STAGE) if p.endswith(".parquet")]


def count_entries(lake: Lake, metadata: Sequence[str], shards: Iterable[str] | None = None) -> StageReport:
    """Sum per-entry match counts over the shards' match files (all present ones by default)."""
    report = StageReport(stage="entry_counts", shard="all")
    with report.timed():
        files = [f"{MATCHES_STAGE}/{s}.parquet" for s in shards] if shards is not None else match_files(lake)
        counts = np.zeros(len(metadata), np.int64)
        for rel in files:
            offsets, values = _offsets_and_values(lake.read_parquet(rel, columns=["entry_ids"])["entry_ids"])
            if values.size and values.max() >= len(metadata):
                raise ValueError(
                    f"{rel} has entry ids beyond the {len(metadata)}-entry list: matched with another list"
                )
            counts += np.bincount(values, minlength=len(metadata))
            report.rows_in += len(offsets) - 1
            report.rows_kept += int((np.diff(offsets) > 0).sum())
        report.dropped[R.NO_MATCH] = report.rows_in - report.rows_kept
        table = pa.table(
            [pa.array(np.arange(len(metadata), dtype=np.int32)), pa.array(list(metadata), pa.string()), counts],
            schema=COUNTS_SCHEMA,
        )
        lake.write_parquet(ENTRY_COUNTS, table)
    report.extra = {
        "shards": len(files),
        "matches": int(counts.sum()),
        "entries": len(metadata),
        "entries_matched": int((counts > 0).sum()),
        "metadata_sha": fingerprint(metadata),
    }
    report.check()
    lake.write_json("curation/entry_counts.report.json", report.to_dict())
    return report


def load_entry_counts(lake: Lake) -> tuple[np.ndarray, list[str]]:
    """(count per entry id, entry strings) from ``curation/entry_counts.parquet``."""
    table = lake.read_parquet(ENTRY_COUNTS).sort_by("entry_id")
    return table["count"].to_numpy(), table["entry"].to_pylist()


@dataclass(frozen=True)
class BalanceConfig:
    """Either a fixed ``t`` (MetaCLIP: 20,000 for 400M of 1.6B) or a target tail fraction to derive it from."""

    t: float | None = None
    tail_fraction: float | None = None
    seed: int = 0

    def threshold(self, counts: np.ndarray) -> float:
        if (self.t is None) == (self.tail_fraction is None):
            raise ValueError("set exactly one of t and tail_fraction")
        if self.t is not None:
            return float(self.t)
        return float(threshold_for_tail_fraction(counts, self.tail_fraction))


def balance_shard(
    lake: Lake, shard: str, config: BalanceConfig, counts: np.ndarray | None = None, top: int = 10
) -> StageReport:
    """Decide every sample of the shard's match file; ``counts`` defaults to the lake's global entry counts."""
    report = StageReport(stage="curation", shard=shard)
    with report.timed():
        entries = None
        if counts is None:
            counts, entries = load_entry_counts(lake)
        t = config.threshold(counts)
        matches = lake.read_parquet(f"{MATCHES_STAGE}/{shard}.parquet")
        offsets, values = _offsets_and_values(matches["entry_ids"])
        if values.size and values.max() >= len(counts):
            raise ValueError(f"{shard}: entry ids beyond the {len(counts)} counted entries: matched with another list")
        p = p_keep(offsets, values, counts, t)
        matched = np.diff(offsets) > 0
        kept = matched & (draws(matches["uid"].combine_chunks(), config.seed) < p)
        reason = np.where(matched, np.where(kept, "", R.BALANCED_OUT), R.NO_MATCH)
        table = pa.table([matches["uid"], p, kept, pa.array(reason, pa.string())], schema=CURATION_SCHEMA)
        lake.write_parquet(table_path("curation", shard), table)
    report.rows_in = len(kept)
    report.rows_kept = int(kept.sum())
    report.dropped[R.NO_MATCH] = int((~matched).sum())
    report.dropped[R.BALANCED_OUT] = int((matched & ~kept).sum())
    report.extra = {"t": t, "seed": config.seed, "expected_kept": round(float(p.sum()), 3)}
    if entries is not None:
        info = summary(counts, entries, t, top)
        report.extra |= {
            "entries_above_t": info["entries_above_t"],
            "tail_fraction": round(info["tail_fraction"], 6),
            "top_entries": info["top_entries"],
        }
    report.check()
    lake.write_json(report_path("curation", shard), report.to_dict())
    return report


def entry_count_curve(lake: Lake, config: BalanceConfig) -> dict[str, np.ndarray]:
    """Entry counts by rank before balancing and the expected kept texts per entry after, over all shards.

    "After" is exact in expectation (Σ p_keep of the texts matching each entry), not MetaCLIP's min(count, t)
    idealisation: a head entry also keeps texts that a tail entry's match pulled in.
    """
    counts, _ = load_entry_counts(lake)
    t = config.threshold(counts)
    kept = np.zeros(len(counts))
    for rel in match_files(lake):
        offsets, values = _offsets_and_values(lake.read_parquet(rel, columns=["entry_ids"])["entry_ids"])
        kept += expected_kept_per_entry(offsets, values, p_keep(offsets, values, counts, t), len(counts))
    return head_tail(counts, t, kept)
