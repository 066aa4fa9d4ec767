"""curation: MetaCLIP over the deduplicated pool. A metadata list, per-shard matches, and the global entry counts
that the dataset step balances with (``p_keep`` is computed there, so no shard's table goes stale)."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from assets.reporting import affected_metadata, markdown_table, per_shard, track, tracking_metadata
from assets.settings import CurationSettings, GuardrailSettings
from assets.stage_asset import stage_asset
from infra.resources import LakeResource, MlflowResource
from ops import graph
from ops.curation import Matcher, load_metadata
from ops.curation.stage import (
    ENTRY_COUNTS,
    METADATA,
    count_entries,
    entry_count_curve,
    load_entry_counts,
    match_shard,
    publish_metadata,
)
from ops.plots import ranked_curves
from ops.stage import done_shards
from pipelines.partitions import shards


@stage_asset("metaclip_metadata", kinds={"python", "json"})
def metaclip_metadata(
    context: AssetExecutionContext, lake: LakeResource, curation_settings: CurationSettings
) -> MaterializeResult:
    store = lake.lake()
    crawled = done_shards(store, graph.stage("crawl"), context.instance.get_dynamic_partitions(shards.name))
    report = publish_metadata(store, curation_settings.config(), crawled)
    entries = load_metadata(METADATA, lake=store)
    return MaterializeResult(
        metadata={
            "entries": MetadataValue.int(len(entries)),
            "source": MetadataValue.text(report.extra["source"]),
            "sample": MetadataValue.json(entries[:25]),
            "path": MetadataValue.path(store.uri(METADATA)),
            **affected_metadata(report.extra["affected_shards"], "the entry list changed: their matches are stale"),
        }
    )


@stage_asset("curation", kinds={"python", "parquet"})
def curation(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, guardrail_settings: GuardrailSettings
) -> MaterializeResult:
    store = lake.lake()
    matcher = Matcher(load_metadata(METADATA, lake=store))
    return per_shard(
        context,
        store,
        mlflow,
        "curation",
        guardrails=guardrail_settings.config(),
        op=lambda shard: match_shard(store, shard, matcher),
    )


@stage_asset("entry_counts", kinds={"python", "parquet"})
def entry_counts(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, curation_settings: CurationSettings
) -> MaterializeResult:
    store = lake.lake()
    matched = done_shards(store, graph.stage("curation"), context.instance.get_dynamic_partitions(shards.name))
    report = count_entries(store, load_metadata(METADATA, lake=store), matched)
    run_id = track(context, mlflow, store, [report])
    balance = curation_settings.config().balance
    curve = entry_count_curve(store, matched, balance)
    t = balance.threshold(load_entry_counts(store)[0])
    figure = ranked_curves({"before": curve["before"], "after (expected)": curve["after"]}, "MetaCLIP entry counts", t)
    mlflow.tracker(store).log_figure(run_id, figure, "curation/entry_counts_head_tail.png")
    counts = store.read_parquet(ENTRY_COUNTS).sort_by([("count", "descending")])
    return MaterializeResult(
        metadata={
            "shards": MetadataValue.int(len(matched)),
            "entries_matched": MetadataValue.int(int(pc.sum(pc.greater(counts["count"], 0)).as_py() or 0)),
            "matches": MetadataValue.int(int(pc.sum(counts["count"]).as_py() or 0)),
            "t": MetadataValue.float(float(t)),
            "top_entries": MetadataValue.md(markdown_table(counts.select(["entry", "count"]), limit=15)),
            **tracking_metadata(mlflow.tracker(store), run_id),
        }
    )
