"""Blocking asset checks: the books of each per-shard stage must balance before anything downstream runs.

Each check re-reads what the stage wrote to the lake (table, report, and for download the tar itself) and asks
``ops.ledger`` for problems; the asset reports the result through its ``check_specs``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetCheckSpec

from infra.lake import Lake
from ops import dedup as dedup_op
from ops import download as download_op
from ops.crawl import PAIR_REASONS
from ops.curation.reasons import REASONS as CURATION_REASONS
from ops.curation.stage import MATCHES_STAGE, curation_input
from ops.dedup.layout import hashes_path, hashes_report_path
from ops.layout import report_path, table_path
from ops.ledger import check_ledger, kept_uids
from ops.quality import REASONS as QUALITY_REASONS
from ops.recaption import REASONS as RECAPTION_REASONS
from ops.report import StageReport

ROWS_CONSERVED = "rows_conserved"


def conservation_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        ROWS_CONSERVED,
        asset=asset,
        blocking=True,
        description="rows in = rows kept + rows dropped, every drop has a reason from the stage's vocabulary",
    )


def crawl_problems(lake: Lake, shard: str, _report: StageReport) -> list[str]:
    written = StageReport.from_dict(lake.read_json(report_path("crawl", shard)))
    table = lake.read_parquet(table_path("crawl", shard), columns=["uid", "kept", "reason"])
    problems = check_ledger(table, PAIR_REASONS, report=written)
    extra = written.extra
    failed = sum(v for k, v in extra.items() if k.startswith("records_failed."))
    if extra.get("records_in", 0) != extra.get("records_used", 0) + extra.get("records_ignored", 0) + failed:
        problems.append("records in != used + ignored + failed")
    return problems


def download_problems(lake: Lake, shard: str, _report: StageReport) -> list[str]:
    paths = download_op.paths(shard)
    written = StageReport.from_dict(lake.read_json(paths["report"]))
    upstream = lake.read_parquet(table_path("crawl", shard), columns=["uid", "kept"])
    table = lake.read_parquet(paths["ledger"], columns=["uid", "kept", "reason"])
    problems = check_ledger(table, download_op.REASONS, report=written, expected_uids=kept_uids(upstream))
    if written.extra.get("tar_samples") != written.rows_kept:
        problems.append(f"tar holds {written.extra.get('tar_samples')} samples, ledger keeps {written.rows_kept}")
    return problems


def _download_kept(lake: Lake, shard: str) -> list[str]:
    return kept_uids(lake.read_parquet(download_op.paths(shard)["ledger"], columns=["uid", "kept"]))


def image_hashes_problems(lake: Lake, shard: str, _report: StageReport) -> list[str]:
    written = StageReport.from_dict(lake.read_json(hashes_report_path(shard)))
    table = lake.read_parquet(hashes_path(shard), columns=["uid", "reason"])
    table = table.append_column("kept", pc.equal(table["reason"], ""))
    return check_ledger(table, dedup_op.REASONS, report=written, expected_uids=_download_kept(lake, shard))


def dedup_problems(lake: Lake, shard: str, _report: StageReport) -> list[str]:
    written = StageReport.from_dict(lake.read_json(report_path("dedup", shard)))
    table = lake.read_parquet(table_path("dedup", shard), columns=["uid", "kept", "reason"])
    return check_ledger(table, dedup_op.REASONS, report=written, expected_uids=_download_kept(lake, shard))


def _passed_on(lake: Lake, stage: str, shard: str, written: StageReport, reasons: frozenset[str] | tuple) -> list[str]:
    """Problems of a stage whose input is what the upstream named in its report kept."""
    upstream = written.extra.get("upstream")
    if not upstream:
        return [f"{stage} report does not name its upstream stage"]
    expected = kept_uids(lake.read_parquet(table_path(upstream, shard), columns=["uid", "kept"]))
    table = lake.read_parquet(table_path(stage, shard), columns=["uid", "kept", "reason"])
    return check_ledger(table, reasons, report=written, expected_uids=expected)


def quality_problems(lake: Lake, shard: str, _report: StageReport) -> list[str]:
    written = StageReport.from_dict(lake.read_json(report_path("quality", shard)))
    return _passed_on(lake, "quality", shard, written, QUALITY_REASONS)


def recaption_problems(lake: Lake, shard: str, _report: StageReport) -> list[str]:
    written = StageReport.from_dict(lake.read_json(report_path("recaption", shard)))
    return _passed_on(lake, "recaption", shard, written, RECAPTION_REASONS)


def curation_matches_problems(lake: Lake, shard: str, _report: StageReport) -> list[str]:
    written = StageReport.from_dict(lake.read_json(report_path(MATCHES_STAGE, shard)))
    table = lake.read_parquet(table_path(MATCHES_STAGE, shard))
    matched = pc.greater(pc.list_value_length(table["entry_ids"]), 0)
    table = pa.table({"uid": table["uid"], "kept": matched, "reason": pc.if_else(matched, "", "no_match")})
    expected = curation_input(lake, shard)[0]["uid"].to_pylist()
    return check_ledger(table, CURATION_REASONS, report=written, expected_uids=expected)


def curation_problems(lake: Lake, shard: str, _report: StageReport) -> list[str]:
    written = StageReport.from_dict(lake.read_json(report_path("curation", shard)))
    table = lake.read_parquet(table_path("curation", shard), columns=["uid", "kept", "reason"])
    expected = curation_input(lake, shard)[0]["uid"].to_pylist()
    return check_ledger(table, CURATION_REASONS, report=written, expected_uids=expected)
