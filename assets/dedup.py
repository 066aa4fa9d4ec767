"""dedup: fingerprint each shard once (``image_hashes``), decide across all shards (``dedup_index``), then write
each shard's decisions (``dedup``). Adding a shard hashes only that shard."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from assets.checks import ROWS_CONSERVED, conservation_spec, dedup_problems, image_hashes_problems
from assets.download import download
from assets.reporting import per_shard, track
from assets.settings import DedupSettings
from infra.resources import LakeResource, MlflowResource
from ops.dedup import build_index, cluster_size_histogram, dedup_shard, hash_shard
from ops.dedup.layout import hashes_path
from ops.layout import table_path
from ops.plots import histogram
from pipelines.partitions import shards


@asset(
    partitions_def=shards,
    deps=[download],
    group_name="dedup",
    kinds={"python", "parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[conservation_spec("image_hashes")],
)
def image_hashes(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, dedup_settings: DedupSettings
) -> MaterializeResult:
    """Pixel SHA-256 and pHash (plus an embedding when semantic dedup is on) of every downloaded image."""
    store = lake.lake()
    config = dedup_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        op=lambda shard: hash_shard(store, shard, config),
        check=lambda shard, report: image_hashes_problems(store, shard, report),
        check_name=ROWS_CONSERVED,
    )


@asset(deps=[image_hashes], group_name="dedup", kinds={"python", "parquet"})
def dedup_index(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, dedup_settings: DedupSettings
) -> MaterializeResult:
    """Exact, near-duplicate and optional semantic clusters over ALL hashed shards, plus eval decontamination."""
    store = lake.lake()
    known = context.instance.get_dynamic_partitions(shards.name)
    hashed = [s for s in known if store.exists(hashes_path(s))]
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
            "mlflow_run_id": MetadataValue.text(run_id),
        }
    )


@asset(
    partitions_def=shards,
    deps=[dedup_index],
    group_name="dedup",
    kinds={"python", "parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[conservation_spec("dedup")],
)
def dedup(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, dedup_settings: DedupSettings
) -> MaterializeResult:
    """Every downloaded sample of the shard, kept or dropped as a duplicate of a named survivor."""
    store = lake.lake()
    config = dedup_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        op=lambda shard: dedup_shard(store, shard, config),
        check=lambda shard, report: dedup_problems(store, shard, report),
        check_name=ROWS_CONSERVED,
        preview=lambda shard: (
            store.read_parquet(
                table_path("dedup", shard), columns=["uid", "kept", "reason", "duplicate_of", "cluster_size"]
            )
            .filter(~pc.field("kept"))
            .slice(0, 10)
        ),
    )
