"""crawl: one source file (WARC, WAT or URL list) -> ``crawl/<shard>.parquet`` of image-text pairs."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, asset

from assets.checks import ROWS_CONSERVED, conservation_spec, crawl_problems
from assets.reporting import per_shard
from assets.settings import CrawlSettings
from infra.resources import LakeResource, MlflowResource
from ops.crawl import crawl_shard
from ops.layout import table_path
from ops.sources import source_for
from pipelines.partitions import shards


@asset(
    partitions_def=shards,
    group_name="ingest",
    kinds={"python", "parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[conservation_spec("crawl")],
)
def crawl(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, crawl_settings: CrawlSettings
) -> MaterializeResult:
    """Image-text pairs from each page's <img> tags, with URL policy, opt-out and language ID applied."""
    store = lake.lake()
    config = crawl_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        op=lambda shard: crawl_shard(store, source_for(store, shard), shard, config),
        check=lambda shard, report: crawl_problems(store, shard, report),
        check_name=ROWS_CONSERVED,
        preview=lambda shard: (
            store.read_parquet(table_path("crawl", shard), columns=["url", "text", "lang", "kept", "reason"])
            .filter(pc.field("kept"))
            .slice(0, 10)
        ),
    )
