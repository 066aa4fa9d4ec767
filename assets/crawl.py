"""crawl: one registered source file (WARC, WAT or URL list) -> ``crawl/<shard>.parquet`` of image-text pairs."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, MaterializeResult

from assets.reporting import per_shard
from assets.settings import CrawlSettings, GuardrailSettings
from assets.stage_asset import stage_asset
from infra.resources import LakeResource, MlflowResource
from ops import graph
from ops.crawl import crawl_shard
from ops.sources import source_for


@stage_asset("crawl", kinds={"python", "parquet"})
def crawl(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    crawl_settings: CrawlSettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = crawl_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        "crawl",
        guardrails=guardrail_settings.config(),
        op=lambda shard: crawl_shard(store, source_for(store, shard), shard, config),
        preview=lambda shard: (
            store.read_parquet(graph.stage("crawl").table(shard), columns=["url", "text", "lang", "kept", "reason"])
            .filter(pc.field("kept"))
            .slice(0, 10)
        ),
    )
