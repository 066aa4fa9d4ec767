"""safety: captions carrying personal data are dropped before any captioner or model reads them."""

from dagster import AssetExecutionContext, MaterializeResult

from assets.reporting import per_shard
from assets.settings import GuardrailSettings, SafetySettings
from assets.stage_asset import stage_asset
from infra.resources import LakeResource, MlflowResource
from ops.safety import safety_shard


@stage_asset("safety", kinds={"python", "parquet"})
def safety(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    safety_settings: SafetySettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = safety_settings.config()
    return per_shard(
        context,
        store,
        mlflow,
        "safety",
        guardrails=guardrail_settings.config(),
        op=lambda shard: safety_shard(store, shard, config),
    )
