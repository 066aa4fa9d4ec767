"""download: img2dataset over each shard's kept pairs -> webdataset tar + ledger + stats."""

from dagster import AssetExecutionContext, MaterializeResult

from assets.reporting import per_shard
from assets.settings import DownloadSettings, GuardrailSettings
from assets.stage_asset import stage_asset
from infra.resources import LakeResource, MlflowResource
from ops.download import download_shard, paths


@stage_asset("download", kinds={"python", "webdataset"})
def download(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    download_settings: DownloadSettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = download_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        "download",
        guardrails=guardrail_settings.config(),
        op=lambda shard: download_shard(store, shard, config),
        preview=lambda shard: store.read_parquet(
            paths(shard)["ledger"], columns=["url", "kept", "reason", "width", "height", "error_message"]
        ).slice(0, 10),
    )
