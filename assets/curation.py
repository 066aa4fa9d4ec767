"""curation: MetaCLIP over the deduplicated pool. A metadata list, per-shard matches, global entry counts, then
per-shard balancing with ``p_keep`` stored for online curation."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from assets.checks import ROWS_CONSERVED, conservation_spec, curation_matches_problems, curation_problems
from assets.crawl import crawl
from assets.dedup import dedup
from assets.reporting import markdown_table, per_shard, track
from assets.settings import CurationSettings
from infra.resources import LakeResource, MlflowResource
from ops.curation import balance_shard, build_metadata, count_entries, load_metadata, match_shard, save_metadata
from ops.curation.metadata import crawl_texts
from ops.curation.stage import ENTRY_COUNTS, MATCHES_STAGE, METADATA, entry_count_curve
from ops.layout import table_path
from ops.plots import ranked_curves
from pipelines.partitions import shards


@asset(deps=[crawl], group_name="curation", kinds={"python", "json"})
def metaclip_metadata(
    context: AssetExecutionContext, lake: LakeResource, curation_settings: CurationSettings
) -> MaterializeResult:
    """The MetaCLIP entry list: loaded from ``metadata_uri``, or built from WordNet and the crawled text."""
    store = lake.lake()
    if curation_settings.metadata_uri:
        entries = load_metadata(curation_settings.metadata_uri, lake=store)
        source = curation_settings.metadata_uri
    else:
        known = context.instance.get_dynamic_partitions(shards.name)
        texts = crawl_texts(store, curation_settings.lang, [s for s in known if store.exists(table_path("crawl", s))])
        entries = build_metadata(texts, config=curation_settings.metadata_config())
        source = "built: WordNet + crawl unigrams/bigrams"
    save_metadata(store, METADATA, entries)
    return MaterializeResult(
        metadata={
            "entries": MetadataValue.int(len(entries)),
            "source": MetadataValue.text(source),
            "sample": MetadataValue.json(entries[:25]),
            "path": MetadataValue.path(store.uri(METADATA)),
        }
    )


@asset(
    partitions_def=shards,
    deps=[dedup, metaclip_metadata],
    group_name="curation",
    kinds={"python", "parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[conservation_spec("curation_matches")],
)
def curation_matches(context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource) -> MaterializeResult:
    """Entry ids matched by each surviving caption (MetaCLIP's substring rule, case-sensitive)."""
    store = lake.lake()
    metadata = load_metadata(METADATA, lake=store)
    return per_shard(
        context,
        store,
        mlflow,
        op=lambda shard: match_shard(store, shard, metadata),
        check=lambda shard, report: curation_matches_problems(store, shard, report),
        check_name=ROWS_CONSERVED,
    )


@asset(deps=[curation_matches], group_name="curation", kinds={"python", "parquet"})
def entry_counts(context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource) -> MaterializeResult:
    """Matches per entry summed over ALL shards: what balancing divides t by."""
    store = lake.lake()
    known = context.instance.get_dynamic_partitions(shards.name)
    matched = [s for s in known if store.exists(table_path(MATCHES_STAGE, s))]
    report = count_entries(store, load_metadata(METADATA, lake=store), matched)
    track(context, mlflow, store, [report])
    counts = store.read_parquet(ENTRY_COUNTS).sort_by([("count", "descending")])
    return MaterializeResult(
        metadata={
            "shards": MetadataValue.int(len(matched)),
            "entries_matched": MetadataValue.int(int(pc.sum(pc.greater(counts["count"], 0)).as_py() or 0)),
            "matches": MetadataValue.int(int(pc.sum(counts["count"]).as_py() or 0)),
            "top_entries": MetadataValue.md(markdown_table(counts.select(["entry", "count"]), limit=15)),
        }
    )


@asset(
    partitions_def=shards,
    deps=[entry_counts],
    group_name="curation",
    kinds={"python", "parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[conservation_spec("curation")],
)
def curation(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, curation_settings: CurationSettings
) -> MaterializeResult:
    """Balanced sample: p_keep = 1 − Π(1 − min(1, t / count_e)), a deterministic draw per (seed, uid)."""
    store = lake.lake()
    config = curation_settings.balance_config()
    result = per_shard(
        context,
        store,
        mlflow,
        op=lambda shard: balance_shard(store, shard, config),
        check=lambda shard, report: curation_problems(store, shard, report),
        check_name=ROWS_CONSERVED,
    )
    curve = entry_count_curve(store, config)
    tracker = mlflow.tracker(store)
    run_id = tracker.run_for(context.run.run_id, {})
    t = store.read_json(f"curation/{context.partition_keys[-1]}.report.json")["extra"]["t"]
    figure = ranked_curves({"before": curve["before"], "after (expected)": curve["after"]}, "MetaCLIP entry counts", t)
    tracker.log_figure(run_id, figure, "curation/entry_counts_head_tail.png")
    return result
