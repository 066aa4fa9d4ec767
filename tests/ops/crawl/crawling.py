"""Running the crawl op in tests, and the invariants every crawl table must satisfy."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from infra.lake import Lake
from ops.crawl import PAIR_REASONS, RECORD_FAILURES, SCHEMA, CrawlConfig, crawl_shard
from ops.crawl.books import read_problems
from ops.crawl.framing import ReadTotals
from ops.crawl.records import SourceRecord
from ops.report import StageReport
from ops.uid import pair_uid


def crawl(tmp_path: Path, source: Path, config: CrawlConfig | None = None) -> tuple[StageReport, list[dict]]:
    """Copy ``source`` into a lake under tmp_path, crawl it, and return the report and the rows."""
    lake = Lake(str(tmp_path / "lake"))
    rel = f"sources/{source.name}"
    dest = Path(lake.path(rel))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() != dest.resolve():
        shutil.copy(source, dest)
    report = crawl_shard(lake, rel, "shard-0", config or CrawlConfig())
    table = lake.read_parquet("crawl/shard-0.parquet")
    assert table.schema.equals(SCHEMA)
    return report, table.to_pylist()


def check_accounting(report: StageReport, rows: list[dict]) -> None:
    report.check()
    extra = report.extra
    failed = sum(v for k, v in extra.items() if k.startswith("records_failed."))
    ignored = sum(v for k, v in extra.items() if k.startswith("records_ignored."))
    assert extra["records_failed"] == failed
    assert extra["records_ignored"] == ignored
    assert extra["records_in"] == extra["records_used"] + ignored + failed
    assert read_problems(extra) == []
    assert {k.split(".", 1)[1] for k in extra if k.startswith("records_failed.")} <= set(RECORD_FAILURES)
    assert report.rows_in == len(rows)
    assert report.rows_kept == sum(r["kept"] for r in rows)
    assert report.dropped == Counter(r["reason"] for r in rows if not r["kept"])
    assert set(report.dropped) <= set(PAIR_REASONS)
    assert [r["position"] for r in rows] == list(range(len(rows)))
    for row in rows:
        assert row["kept"] == (row["reason"] == "")
        assert row["uid"] == pair_uid(row["url"], row["text"])
        if not row["kept"]:
            assert (row["lang"], row["lang_prob"]) == ("", 0.0)


def record_books(records: list[SourceRecord], totals: ReadTotals) -> dict:
    """The crawl report's record counts for what a reader yielded, counted as ``ops.crawl.shard`` counts them (pages
    as used unless damaged), plus what the read covered: the input of ``ops.crawl.books.read_problems``."""
    failed = Counter(r.damage or r.reason for r in records if r.status == "failed" or r.damage)
    ignored = Counter(r.reason for r in records if r.status == "ignored")
    return {
        "source_format": "warc",
        "records_in": len(records),
        "records_used": sum(1 for r in records if r.status == "page" and not r.damage),
        "records_ignored": sum(ignored.values()),
        "records_failed": sum(failed.values()),
        **{f"records_failed.{k}": v for k, v in failed.items()},
        **{f"records_ignored.{k}": v for k, v in ignored.items()},
        **totals.to_extra(),
    }
