"""What every per-shard asset does around its op: run it per partition, track it, and describe the result.

Kept in one place so every stage reports the same metadata keys (rows_in, rows_kept, rows_dropped, dropped,
seconds, rows_per_s) and the UI can plot them side by side over time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
from dagster import AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, MaterializeResult, MetadataValue

from assets.checks import DROP_SHARE, ROWS_CONSERVED
from infra.lake import Lake
from infra.resources import MlflowResource
from infra.tracking import Tracker
from ops import graph
from ops.guardrails import GuardrailConfig, drop_verdict
from ops.report import StageReport
from ops.stage import conservation_problems


def run_tags(context: AssetExecutionContext) -> dict[str, str]:
    """MLflow tags that tie a tracking run to its Dagster run, assets and partitions."""
    run = context.run
    tags = {"dagster.job": run.job_name}
    if run.asset_selection:
        tags["dagster.assets"] = ",".join(sorted(k.to_user_string() for k in run.asset_selection))
    partition = run.tags.get("dagster/partition")
    start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    if partition:
        tags["dagster.partitions"] = partition
    elif start:
        tags["dagster.partitions"] = f"{start}...{end}"
    return tags


def run_name(context: AssetExecutionContext) -> str:
    """What a person reads in the MLflow run list: what ran (the job, or the assets of an automation or backfill
    run) and for which shards."""
    run = context.run
    assets = "+".join(sorted(k.to_user_string() for k in run.asset_selection or []))
    what = assets if run.job_name.startswith("__") and assets else run.job_name
    return f"{what} · {run_tags(context).get('dagster.partitions', 'all shards')}"


def open_tracking(context: AssetExecutionContext, mlflow: MlflowResource, lake: Lake) -> Future[tuple[Tracker, str]]:
    """Open this Dagster run's MLflow run in a background thread.

    Opening costs about a second per run (store connection, the race-safe create-and-settle in
    ``Tracker.run_for``); started before a stage's work, it overlaps that work instead of adding to it.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-open")
    tags = run_tags(context)
    dagster_run_id = context.run.run_id
    name = run_name(context)

    def open_run() -> tuple[Tracker, str]:
        tracker = mlflow.tracker(lake)
        return tracker, tracker.run_for(dagster_run_id, tags, run_name=name)

    future = pool.submit(open_run)
    pool.shutdown(wait=False)
    return future


def track(
    context: AssetExecutionContext,
    mlflow: MlflowResource,
    lake: Lake,
    reports: Sequence[StageReport],
    opened: Future[tuple[Tracker, str]] | None = None,
) -> str:
    """Log the reports into this Dagster run's MLflow run (``opened`` early by :func:`open_tracking` or now): one
    child run per shard with that shard's numbers, and the run's totals on the parent."""
    tracker, run_id = (opened or open_tracking(context, mlflow, lake)).result()
    tags = run_tags(context)
    for report in reports:
        if report.shard != "all":
            child = tracker.shard_run_for(context.run.run_id, run_id, report.shard, tags)
            tracker.log_report(child, report)
    for total in totals(reports):
        tracker.log_report(run_id, total)
    return run_id


def totals(reports: Sequence[StageReport]) -> list[StageReport]:
    """One report per stage summed over shards (a global step's report is its own total)."""
    by_stage: dict[str, StageReport] = {}
    for report in reports:
        if report.shard == "all":
            by_stage[report.stage] = report
            continue
        total = by_stage.setdefault(report.stage, StageReport(stage=report.stage, shard="all"))
        total.rows_in += report.rows_in
        total.rows_kept += report.rows_kept
        total.dropped.update(report.dropped)
        total.seconds += report.seconds
    return list(by_stage.values())


def tracking_metadata(tracker: Tracker, run_id: str) -> dict[str, MetadataValue]:
    """The MLflow run of this materialization: its id, and a link when there is an MLflow UI to open."""
    meta = {"mlflow_run_id": MetadataValue.text(run_id)}
    url = tracker.run_url(run_id)
    if url:
        meta["mlflow_run"] = MetadataValue.url(url)
    return meta


def markdown_table(table: pa.Table, limit: int = 10, width: int = 60) -> str:
    """A small preview of a stage table for the Dagster UI."""
    rows = table.slice(0, limit).to_pylist()
    if not rows:
        return "_no rows_"
    cols = table.column_names
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")[:width]  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def stage_metadata(reports: Sequence[StageReport]) -> dict[str, MetadataValue]:
    """The same keys for every stage, summed over the partitions of this run, plus a per-shard table."""
    dropped: Counter[str] = Counter()
    for r in reports:
        dropped.update(r.dropped)
    rows_in = sum(r.rows_in for r in reports)
    seconds = sum(r.seconds for r in reports)
    meta: dict[str, MetadataValue] = {
        "rows_in": MetadataValue.int(rows_in),
        "rows_kept": MetadataValue.int(sum(r.rows_kept for r in reports)),
        "rows_dropped": MetadataValue.int(sum(dropped.values())),
        "seconds": MetadataValue.float(round(seconds, 3)),
        "rows_per_s": MetadataValue.float(round(rows_in / seconds, 1) if seconds else 0.0),
        "dropped": MetadataValue.md(
            "\n".join(["| reason | rows |", "|---|---|"] + [f"| {k} | {v} |" for k, v in dropped.most_common()])
            if dropped
            else "_nothing dropped_"
        ),
    }
    if len(reports) > 1:
        meta["shards"] = MetadataValue.md(
            "\n".join(
                ["| shard | in | kept | dropped | s |", "|---|---|---|---|---|"]
                + [f"| {r.shard} | {r.rows_in} | {r.rows_kept} | {r.rows_dropped} | {r.seconds:.2f} |" for r in reports]
            )
        )
    return meta


def per_shard(
    context: AssetExecutionContext,
    lake: Lake,
    mlflow: MlflowResource,
    stage: str,
    op: Callable[[str], StageReport],
    guardrails: GuardrailConfig,
    preview: Callable[[str], pa.Table] | None = None,
    extra_metadata: dict[str, MetadataValue] | None = None,
) -> MaterializeResult:
    """Run ``op`` for each partition of this run, verify its books, log to MLflow, and build the result."""
    opened = open_tracking(context, mlflow, lake)
    declared = graph.stage(stage)
    reports: list[StageReport] = []
    problems: dict[str, list[str]] = {}
    for shard in context.partition_keys:
        report = op(shard)
        context.log.info(
            f"{report.stage}/{shard}: {report.rows_in} in, {report.rows_kept} kept, "
            f"{report.rows_dropped} dropped {dict(report.dropped)} in {report.seconds:.2f}s"
        )
        reports.append(report)
        found = conservation_problems(lake, declared, shard)
        if found:
            problems[shard] = found
    mlflow_run = track(context, mlflow, lake, reports, opened)
    metadata = stage_metadata(reports)
    metadata.update(tracking_metadata(opened.result()[0], mlflow_run))
    metadata.update(extra_metadata or {})
    if preview is not None:
        metadata["preview"] = MetadataValue.md(markdown_table(preview(reports[-1].shard)))
    check_result = AssetCheckResult(
        check_name=ROWS_CONSERVED,
        passed=not problems,
        metadata={
            "shards_checked": MetadataValue.int(len(reports)),
            "problems": MetadataValue.json(problems),
        },
    )
    verdicts = [v for v in (drop_verdict(r, guardrails) for r in reports) if v]
    for verdict in verdicts:
        context.log.warning(verdict)
    drop_check = AssetCheckResult(
        check_name=DROP_SHARE,
        passed=not verdicts,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "max_drop_share": MetadataValue.float(guardrails.max_drop_share),
            "flagged": MetadataValue.json(verdicts),
        },
    )
    return MaterializeResult(metadata=metadata, check_results=[check_result, drop_check])


def affected_metadata(affected: Sequence[str], why: str) -> dict[str, MetadataValue]:
    """The global step's list of shards whose per-shard inputs changed (read by the automation), and why."""
    return {
        "affected_shards": MetadataValue.json(sorted(affected)),
        "affected": MetadataValue.text(f"{len(affected)} shard(s): {why}" if affected else f"none: {why}"),
    }
