"""dedup: fingerprint each shard once (``image_hashes``), decide across all shards (``dedup_index``), then write
each shard's decisions (``dedup``). Adding a shard hashes only that shard, and re-decides an older shard only when
the index's decisions for it changed."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from assets.reporting import affected_metadata, per_shard, track, tracking_metadata
from assets.settings import DedupSettings, GuardrailSettings
from assets.stage_asset import stage_asset
from infra.resources import LakeResource, MlflowResource
from ops import graph
from ops.dedup import build_index, cluster_size_histogram, dedup_shard, hash_shard
from ops.plots import histogram
from ops.stage import done_shards
from pipelines.partitions import shards


@stage_asset("image_hashes", kinds={"python", "parquet"})
def image_hashes(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    dedup_settings: DedupSettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = dedup_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        "image_hashes",
        guardrails=guardrail_settings.config(),
        op=lambda shard: hash_shard(store, shard, config),
    )


@stage_asset("dedup_index", kinds={"python", "parquet"})
def dedup_index(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, dedup_settings: DedupSettings
) -> MaterializeResult:
    store = lake.lake()
    known = context.instance.get_dynamic_partitions(shards.name)
    hashed = done_shards(store, graph.stage("image_hashes"), known)
    context.log.info(f"indexing {len(hashed)} hashed shards of {len(known)} known")
    report = build_index(store, hashed, dedup_settings.config())
    sizes = cluster_size_histogram(store)
    run_id = track(context, mlflow, store, [report])
    tracker = mlflow.tracker(store)
    tracker.log_figure(run_id, histogram(sizes, "dedup cluster sizes", "images per cluster"), "dedup/cluster_sizes.png")
    extra = report.extra
    return MaterializeResult(
        metadata={
            "shards": MetadataValue.int(len(hashed)),
            "rows_in": MetadataValue.int(report.rows_in),
            "rows_kept": MetadataValue.int(report.rows_kept),
            "rows_dropped": MetadataValue.int(report.rows_dropped),
            "dropped": MetadataValue.json(dict(report.dropped)),
            "clusters_with_duplicates": MetadataValue.int(int(extra.get("clusters_with_duplicates", 0))),
            "largest_cluster": MetadataValue.int(int(extra.get("largest_cluster", 0))),
            "cluster_sizes": MetadataValue.json({str(k): v for k, v in sorted(sizes.items())}),
            "seconds": MetadataValue.float(round(report.seconds, 3)),
            **tracking_metadata(mlflow.tracker(store), run_id),
            **affected_metadata(extra["affected_shards"], "their dedup decisions changed (or are new)"),
        }
    )


@stage_asset("dedup", kinds={"python", "parquet"})
def dedup(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    dedup_settings: DedupSettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = dedup_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        "dedup",
        guardrails=guardrail_settings.config(),
        op=lambda shard: dedup_shard(store, shard, config),
        preview=lambda shard: (
            store.read_parquet(
                graph.stage("dedup").table(shard), columns=["uid", "kept", "reason", "duplicate_of", "cluster_size"]
            )
            .filter(~pc.field("kept"))
            .slice(0, 10)
        ),
    )
