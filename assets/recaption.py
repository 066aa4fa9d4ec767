"""recaption: a synthetic caption beside the raw one for every sample that reaches it (none without a captioner)."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from assets.reporting import per_shard
from assets.settings import GuardrailSettings, RecaptionSettings
from assets.stage_asset import stage_asset
from assets.vlm import load_vlm
from infra.resources import LakeResource, MlflowResource
from ops import graph
from ops.recaption import recaption_shard


@stage_asset("recaption", kinds={"pytorch", "parquet"})
def recaption(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    recaption_settings: RecaptionSettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = recaption_settings.config()
    captioner = load_vlm(config.model, config.backend, mlflow, store)
    return per_shard(
        context,
        store,
        mlflow,
        "recaption",
        guardrails=guardrail_settings.config(),
        op=lambda shard: recaption_shard(store, shard, config, captioner),
        preview=lambda shard: (
            store.read_parquet(graph.stage("recaption").table(shard), columns=["uid", "synthetic_text"])
            .filter(pc.is_valid(pc.field("synthetic_text")))
            .slice(0, 10)
        ),
        extra_metadata={"captioner": MetadataValue.text(captioner.name if captioner else "no captioner configured")},
    )
