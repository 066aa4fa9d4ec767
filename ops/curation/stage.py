"""The curation stage over the lake: per-shard matching and the global entry counts.

``match_shard`` matches the caption of every sample dedup kept against the metadata and writes
``curation/<shard>.parquet``: the matched ``entry_ids`` of each sample, kept when it matched something, dropped
as ``no_match`` otherwise. ``count_entries`` sums the matches of all shards into the entry counts. Balancing is
not decided here: ``p_keep`` depends on the counts over ALL shards, which change with every shard added, so the
dataset step computes it from these stored matches (:func:`shard_p_keep`) and no shard's table ever goes stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infra.lake import Lake
from ops import graph
from ops.curation import reasons as R
from ops.curation.balancing import draws, expected_kept_per_entry, head_tail, p_keep, summary
from ops.curation.config import BalanceConfig, CurationConfig
from ops.curation.matching import MATCHES_TYPE, Matcher, fingerprint
from ops.curation.metadata import build_metadata, crawl_texts, load_metadata, save_metadata
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage

METADATA = "curation/metadata.json"
ENTRY_COUNTS = "curation/entry_counts/counts.parquet"
ENTRY_COUNTS_REPORT = "curation/entry_counts/report.json"

CURATION_SCHEMA = pa.schema(
    [("uid", pa.string()), ("entry_ids", MATCHES_TYPE), ("kept", pa.bool_()), ("reason", pa.string())]
)
COUNTS_SCHEMA = pa.schema([("entry_id", pa.int32()), ("entry", pa.string()), ("count", pa.int64())])


def publish_metadata(lake: Lake, config: CurationConfig, shards: Sequence[str]) -> StageReport:
    """Load the configured entry list, or build one from the kept crawl text of ``shards``, and publish it.

    ``affected_shards`` lists the shards whose matches the publication invalidates: every given shard when the
    list changed, none when it is the same list again.
    """
    report = StageReport(stage="metaclip_metadata", shard="all")
    with report.timed():
        if config.metadata_uri:
            entries = load_metadata(config.metadata_uri, lake=lake)
            source = config.metadata_uri
        else:
            entries = build_metadata(crawl_texts(lake, config.metadata.lang, shards), config=config.metadata)
            source = f"built from WordNet and the crawl text of {len(shards)} shards"
        changed = not lake.exists(METADATA) or load_metadata(METADATA, lake=lake) != entries
        if changed:
            save_metadata(lake, METADATA, entries)
    report.extra.update(
        entries=len(entries),
        source=source,
        metadata_sha=fingerprint(entries),
        affected_shards=list(shards) if changed else [],
    )
    return report


def match_shard(lake: Lake, shard: str, metadata: Matcher | Sequence[str]) -> StageReport:
    """Match the captions of the samples dedup kept; rows in = matched (kept) + ``no_match``."""
    matcher = metadata if isinstance(metadata, Matcher) else Matcher(metadata)

    def decide(samples: pa.Table) -> Decisions:
        entry_ids = matcher.match(samples["text"])
        matched = pc.greater(pc.list_value_length(entry_ids), 0)
        table = pa.table(
            [samples["uid"], entry_ids, matched, pc.if_else(matched, "", R.NO_MATCH)], schema=CURATION_SCHEMA
        )
        extra = {
            "matches": int(pc.sum(pc.list_value_length(entry_ids)).as_py() or 0),
            "entries": matcher.n_entries,
            "metadata_sha": matcher.fingerprint,
        }
        return Decisions(table, extra=extra)

    return run_shard_stage(lake, graph.stage("curation"), shard, decide, columns=["text"])


def _offsets_and_values(entry_ids: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """CSR view of a ``list<int32>`` column (robust to chunking and slicing)."""
    lengths = pc.list_value_length(entry_ids).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(entry_ids)
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return np.concatenate([[0], np.cumsum(lengths)]), values.to_numpy().astype(np.int64)


def count_entries(lake: Lake, metadata: Sequence[str], shards: Iterable[str]) -> StageReport:
    """Sum per-entry match counts over the curation tables of ``shards``."""
    report = StageReport(stage="entry_counts", shard="all")
    stage = graph.stage("curation")
    shards = list(shards)
    with report.timed():
        counts = np.zeros(len(metadata), np.int64)
        for shard in shards:
            offsets, values = _offsets_and_values(lake.read_parquet(stage.table(shard), ["entry_ids"])["entry_ids"])
            if values.size and values.max() >= len(metadata):
                raise ValueError(
                    f"{stage.table(shard)} has entry ids beyond the {len(metadata)}-entry list: matched with another "
                    "list; re-run curation for this shard"
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
        "shards": len(shards),
        "matches": int(counts.sum()),
        "entries": len(metadata),
        "entries_matched": int((counts > 0).sum()),
        "metadata_sha": fingerprint(metadata),
    }
    report.check()
    lake.write_json(ENTRY_COUNTS_REPORT, report.to_dict())
    return report


def load_entry_counts(lake: Lake) -> tuple[np.ndarray, list[str]]:
    """(count per entry id, entry strings) from ``curation/entry_counts.parquet``."""
    table = lake.read_parquet(ENTRY_COUNTS).sort_by("entry_id")
    return table["count"].to_numpy(), table["entry"].to_pylist()


def shard_p_keep(lake: Lake, shard: str, counts: np.ndarray, t: float) -> tuple[pa.Array, np.ndarray]:
    """(uid, p_keep) of every sample of the shard's curation table, from its stored matches and global counts."""
    table = lake.read_parquet(graph.stage("curation").table(shard), ["uid", "entry_ids"])
    offsets, values = _offsets_and_values(table["entry_ids"])
    if values.size and values.max() >= len(counts):
        raise ValueError(f"{shard}: entry ids beyond the {len(counts)} counted entries: matched with another list")
    return table["uid"].combine_chunks(), p_keep(offsets, values, counts, t)


def balance_draws(uids: pa.Array, p: np.ndarray, config: BalanceConfig) -> np.ndarray:
    """MetaCLIP's keep decision per sample: a uniform draw fixed by (seed, uid) below its ``p_keep``."""
    return draws(uids, config.seed) < p


def balance_summary(lake: Lake, config: BalanceConfig, top: int = 10) -> dict:
    """t and the head of the entry distribution, for reports."""
    counts, entries = load_entry_counts(lake)
    t = config.threshold(counts)
    info = summary(counts, entries, t, top)
    return {
        "t": t,
        "entries_above_t": info["entries_above_t"],
        "tail_fraction": round(info["tail_fraction"], 6),
        "top_entries": info["top_entries"],
    }


def entry_count_curve(lake: Lake, shards: Iterable[str], config: BalanceConfig) -> dict[str, np.ndarray]:
    """Entry counts by rank before balancing and the expected kept texts per entry after, over ``shards``.

    "After" is exact in expectation (Σ p_keep of the texts matching each entry), not MetaCLIP's min(count, t)
    idealisation: a head entry also keeps texts that a tail entry's match pulled in.
    """
    counts, _ = load_entry_counts(lake)
    t = config.threshold(counts)
    kept = np.zeros(len(counts))
    for shard in shards:
        entry_ids = lake.read_parquet(graph.stage("curation").table(shard), ["entry_ids"])["entry_ids"]
        offsets, values = _offsets_and_values(entry_ids)
        kept += expected_kept_per_entry(offsets, values, p_keep(offsets, values, counts, t), len(counts))
    return head_tail(counts, t, kept)
