"""quality and recaption: heuristics, a CLIP-score filter (absolute, or a top fraction over ALL shards), a VLM
judge, then a synthetic caption for every kept sample. Model steps share the ``gpu`` concurrency pool."""

import pyarrow.compute as pc
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from assets.checks import ROWS_CONSERVED, conservation_spec, quality_problems, recaption_problems
from assets.curation import curation
from assets.reporting import per_shard, track
from assets.settings import QualitySettings, RecaptionSettings
from infra.resources import LakeResource, MlflowResource
from ops.layout import table_path
from ops.quality import clip_score_shard, clip_threshold, quality_shard
from ops.quality.samples import default_upstream
from ops.recaption import recaption_shard
from pipelines.partitions import shards

GPU_POOL = "gpu"


@asset(
    partitions_def=shards,
    deps=[curation],
    group_name="quality",
    kinds={"pytorch", "parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    pool=GPU_POOL,
)
def clip_scores(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, quality_settings: QualitySettings
) -> MaterializeResult:
    """Raw CLIP scores of every sample entering quality; kept apart so a global threshold can see all shards."""
    store = lake.lake()
    scorer, description = quality_settings.clip_scorer(mlflow.tracker(store))
    if scorer is None:
        return MaterializeResult(metadata={"clip_score": MetadataValue.text(description)})
    reports = [
        clip_score_shard(store, shard, scorer, default_upstream(store, shard)) for shard in context.partition_keys
    ]
    track(context, mlflow, store, reports)
    return MaterializeResult(
        metadata={
            "model": MetadataValue.text(scorer.name),
            "rows_scored": MetadataValue.int(sum(r.rows_kept for r in reports)),
            "rows_unscorable": MetadataValue.int(sum(r.rows_dropped for r in reports)),
        }
    )


@asset(deps=[clip_scores], group_name="quality", kinds={"python"})
def clip_score_threshold(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, quality_settings: QualitySettings
) -> MaterializeResult:
    """DataComp's top-fraction rule over every shard's scores; independent of shard order."""
    store = lake.lake()
    scorer, description = quality_settings.clip_scorer(mlflow.tracker(store))
    if scorer is None or quality_settings.clip_top_fraction is None:
        reason = description if scorer is None else "no top-fraction CLIP filter configured"
        return MaterializeResult(metadata={"threshold": MetadataValue.text(reason)})
    scored = [
        s for s in context.instance.get_dynamic_partitions(shards.name) if store.exists(table_path("quality/clip", s))
    ]
    result = clip_threshold(store, scored, quality_settings.clip_top_fraction)
    return MaterializeResult(
        metadata={
            "threshold": MetadataValue.float(result.threshold),
            "top_fraction": MetadataValue.float(result.top_fraction),
            "scores": MetadataValue.int(result.scores),
            "shards": MetadataValue.int(result.shards),
            "model": MetadataValue.text(result.model),
        }
    )


@asset(
    partitions_def=shards,
    deps=[clip_score_threshold],
    group_name="quality",
    kinds={"pytorch", "parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[conservation_spec("quality")],
    pool=GPU_POOL,
)
def quality(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, quality_settings: QualitySettings
) -> MaterializeResult:
    """Every sample entering quality, kept or dropped by the first filter that refused it, with its scores."""
    store = lake.lake()
    config = quality_settings.quality_config()
    scorer, description = quality_settings.clip_scorer(mlflow.tracker(store))
    judge = quality_settings.judge()
    return per_shard(
        context,
        store,
        mlflow,
        op=lambda shard: quality_shard(store, shard, config, clip=scorer, judge=judge),
        check=lambda shard, report: quality_problems(store, shard, report),
        check_name=ROWS_CONSERVED,
        preview=lambda shard: store.read_parquet(
            table_path("quality", shard), columns=["uid", "clip_score", "judge_score", "kept", "reason"]
        ).slice(0, 10),
        extra_metadata={
            "clip_score": MetadataValue.text(description),
            "judge": MetadataValue.text(judge.name if judge else "no judge configured"),
        },
    )


@asset(
    partitions_def=shards,
    deps=[quality],
    group_name="quality",
    kinds={"pytorch", "parquet"},
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[conservation_spec("recaption")],
    pool=GPU_POOL,
)
def recaption(
    context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, recaption_settings: RecaptionSettings
) -> MaterializeResult:
    """A synthetic caption beside the raw one for every quality-kept sample (none when no captioner is set)."""
    store = lake.lake()
    config = recaption_settings.config()
    captioner = recaption_settings.captioner()
    return per_shard(
        context,
        store,
        mlflow,
        op=lambda shard: recaption_shard(store, shard, config, captioner),
        check=lambda shard, report: recaption_problems(store, shard, report),
        check_name=ROWS_CONSERVED,
        preview=lambda shard: (
            store.read_parquet(table_path("recaption", shard), columns=["uid", "synthetic_text"])
            .filter(pc.is_valid(pc.field("synthetic_text")))
            .slice(0, 10)
        ),
        extra_metadata={
            "captioner": MetadataValue.text(captioner.name if captioner else "no captioner configured"),
        },
    )
