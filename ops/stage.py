"""The shell every per-shard stage runs in, so a stage's module holds only its decisions.

A per-shard stage reads the samples its declared input kept (:func:`entering`), decides each one, and the shell
does the rest the same way for every stage: it times the work, refuses to publish a table that loses, invents or
reorders samples or uses a reason outside the stage's vocabulary, writes the table, checks the report's books
and writes the report last, so that a report's presence means the shard is done. The same rules, read back
from the lake, are the blocking conservation check (:func:`conservation_problems`); both take the input from the
declaration in :mod:`ops.graph`, so the op and its check can never disagree about what entered the stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from infra.lake import Lake
from ops import graph
from ops.ledger import check_ledger, kept_uids
from ops.report import ConservationError, StageReport

# Where the attributes of a sample live: decisions flow as columns keyed by uid, the caption and language stay
# in the crawl table and the tar key and original image size in the download ledger.
SAMPLE_COLUMNS: dict[str, str] = {
    "url": "crawl",
    "text": "crawl",
    "text_source": "crawl",
    "page_url": "crawl",
    "lang": "crawl",
    "source_uid": "crawl",
    "expected_sha256": "crawl",
    "source_fields": "crawl",
    "key": "download",
    "width": "download",
    "height": "download",
    "original_width": "download",
    "original_height": "download",
    "sha256": "download",
}


@dataclass
class Decisions:
    """What a stage decided: one row per entering sample, in their order, with ``uid``, ``kept``, ``reason`` and
    the stage's own columns; numbers and notes for the report; and what to do once the table is published (for
    example, drop a resumable checkpoint that is no longer needed)."""

    table: pa.Table
    extra: dict[str, Any] = field(default_factory=dict)
    after_publish: Callable[[], None] | None = None


def entering(lake: Lake, stage: graph.Stage, shard: str, columns: Sequence[str] = ()) -> pa.Table:
    """``uid`` and ``columns`` of the samples the stage's declared input kept, in the input's order."""
    if stage.takes is None:
        raise ValueError(f"{stage.name} takes no samples from another stage")
    uids = pa.chunked_array(
        [pa.array(kept_uids(lake.read_parquet(graph.stage(stage.takes).table(shard), ["uid", "kept"])), pa.string())]
    ).combine_chunks()
    out: dict[str, pa.Array] = {"uid": uids}
    by_source: dict[str, list[str]] = {}
    for name in columns:
        if name not in SAMPLE_COLUMNS:
            raise KeyError(f"unknown sample column {name!r}; known: {sorted(SAMPLE_COLUMNS)}")
        by_source.setdefault(SAMPLE_COLUMNS[name], []).append(name)
    for source, names in by_source.items():
        table = lake.read_parquet(graph.stage(source).table(shard), ["uid", *names])
        rows = pc.index_in(uids, value_set=table["uid"].combine_chunks())
        if rows.null_count:
            raise ConservationError(f"{shard}: {rows.null_count} samples entering {stage.name} have no {source} row")
        for name in names:
            out[name] = table[name].combine_chunks().take(rows)
    return pa.table(out)


def run_shard_stage(
    lake: Lake,
    stage: graph.Stage,
    shard: str,
    decide: Callable[[pa.Table | None], Decisions],
    columns: Sequence[str] = (),
) -> StageReport:
    """Feed ``decide`` the entering samples (None for a stage that reads a source file), then publish."""
    report = StageReport(stage=stage.name, shard=shard)
    with report.timed():
        samples = entering(lake, stage, shard, columns) if stage.takes else None
        decided = decide(samples)
        table = decided.table
        expected = samples["uid"].to_pylist() if samples is not None else None
        problems = check_ledger(table, stage.reasons, expected_uids=expected)
        if expected is not None and table["uid"].to_pylist() != expected:
            problems.append("rows are not in the order of the entering samples")
        if problems:
            raise ConservationError(f"{stage.name}/{shard}: refusing to publish: {'; '.join(problems)}")
        report.count(table["kept"].fill_null(False).to_pylist(), table["reason"].fill_null("").to_pylist())
        lake.write_parquet(stage.table(shard), table)
    report.extra.update(decided.extra)
    report.check()
    lake.write_json(stage.report(shard), report.to_dict())
    if decided.after_publish is not None:
        decided.after_publish()
    return report


def conservation_problems(lake: Lake, stage: graph.Stage, shard: str) -> list[str]:
    """What is wrong with the shard's published table: read back from the lake and compared with what the
    declared input kept, the stage's vocabulary and its report, plus the stage's own extra rules."""
    if not lake.exists(stage.report(shard)):
        return [f"{stage.report(shard)} is missing: the stage did not finish"]
    written = StageReport.from_dict(lake.read_json(stage.report(shard)))
    table = lake.read_parquet(stage.table(shard), columns=["uid", "kept", "reason"])
    expected = None
    if stage.takes is not None:
        expected = kept_uids(lake.read_parquet(graph.stage(stage.takes).table(shard), ["uid", "kept"]))
    problems = check_ledger(table, stage.reasons, report=written, expected_uids=expected)
    if stage.verify is not None:
        problems += stage.verify(lake, shard, written)
    return problems


def done_shards(lake: Lake, stage: graph.Stage, shards: Iterable[str]) -> list[str]:
    """The shards whose table of ``stage`` is published (its report written), in the given order."""
    return [s for s in shards if lake.exists(stage.report(s))]


def table_digest(table: pa.Table) -> str:
    """A digest of a table's content, to tell whether a global step's input from one shard changed."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue()).hexdigest()[:32]


def publish_if_changed(lake: Lake, rel: str, table: pa.Table) -> bool:
    """Write ``table`` unless the lake already holds the same rows; True when the file changed.

    Global steps write one file per shard this way and report the shards whose file changed: only those have
    to re-run the per-shard stages that read it.
    """
    if lake.exists(rel):
        old = lake.read_parquet(rel)
        if old.schema.equals(table.schema) and old.equals(table):
            return False
    lake.write_parquet(rel, table)
    return True
