"""download: img2dataset over each shard's kept pairs -> webdataset tar + ledger + stats."""

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, asset

from assets.checks import ROWS_CONSERVED, conservation_spec, download_problems
from assets.crawl import crawl
from assets.reporting import per_shard
from assets.settings import DownloadSettings
from infra.resources import LakeResource, MlflowResource
from ops.download import download_shard, paths
from pipelines.partitions import shards


@asset(
    partitions_def=shards,
    deps=[crawl],
    group_name="ingest",
    kinds={"python", "webdataset"},
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[conservation_spec("download")],
    pool="download",
)
def download(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, download_settings: DownloadSettings
) -> MaterializeResult:
    """Images for the shard's kept pairs; every failed URL is recorded with its reason and raw error."""
    store = lake.lake()
    config = download_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        op=lambda shard: download_shard(store, shard, config),
        check=lambda shard, report: download_problems(store, shard, report),
        check_name=ROWS_CONSERVED,
        preview=lambda shard: store.read_parquet(
            paths(shard)["ledger"], columns=["url", "kept", "reason", "width", "height", "error_message"]
        ).slice(0, 10),
    )
