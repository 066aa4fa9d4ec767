"""quality: the metadata heuristics, then raw CLIP scores and pair-judge scores per shard, their top-fraction
thresholds over all shards, then the model filters (CLIP score, VLM judge). Model steps share the ``gpu``
concurrency pool."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from assets.reporting import affected_metadata, per_shard
from assets.settings import GuardrailSettings, QualitySettings
from assets.stage_asset import stage_asset
from assets.vlm import load_vlm
from infra.resources import LakeResource, MlflowResource
from infra.tracking import resolve_clip_model
from ops import graph
from ops.bootstrap import read_bootstrap
from ops.quality import (
    ClipScorer,
    clip_score_shard,
    clip_threshold,
    judge_score_shard,
    judge_threshold,
    quality_shard,
)
from ops.quality.heuristics import heuristics_shard
from ops.quality.judge import PAIRS
from ops.stage import done_shards
from pipelines.partitions import shards


@stage_asset("heuristics", kinds={"python", "parquet"})
def heuristics(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    quality_settings: QualitySettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    rules = quality_settings.config().heuristics.resolve()
    return per_shard(
        context,
        store,
        mlflow,
        "heuristics",
        guardrails=guardrail_settings.config(),
        op=lambda shard: heuristics_shard(store, shard, rules),
    )


@stage_asset("clip_scores", kinds={"pytorch", "parquet"})
def clip_scores(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    quality_settings: QualitySettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    clip = quality_settings.config().clip
    bootstrap = read_bootstrap(store) if clip.bootstrap else None
    spec, description = resolve_clip_model(clip, mlflow.tracker(store), bootstrap)
    scorer = ClipScorer(spec) if spec is not None else None
    return per_shard(
        context,
        store,
        mlflow,
        "clip_scores",
        guardrails=guardrail_settings.config(),
        op=lambda shard: clip_score_shard(store, shard, scorer, clip.batch_size),
        extra_metadata={"model": MetadataValue.text(description)},
    )


@stage_asset("clip_score_threshold", kinds={"python", "json"})
def clip_score_threshold(
    context: AssetExecutionContext, lake: LakeResource, quality_settings: QualitySettings
) -> MaterializeResult:
    store = lake.lake()
    clip = quality_settings.config().clip
    scored = done_shards(store, graph.stage("clip_scores"), context.instance.get_dynamic_partitions(shards.name))
    result = clip_threshold(store, scored, clip.top_fraction, clip.tolerance)
    values = {
        "threshold": MetadataValue.float(result.threshold) if result.threshold is not None else result.note,
        "exact_threshold": MetadataValue.float(result.exact) if result.exact is not None else result.note,
        "kept_share": MetadataValue.float(result.kept_share) if result.kept_share is not None else result.note,
    }
    return MaterializeResult(
        metadata={
            **{k: v if isinstance(v, MetadataValue) else MetadataValue.text(v) for k, v in values.items()},
            "top_fraction": MetadataValue.text(str(result.top_fraction)),
            "scores": MetadataValue.int(result.scores),
            "shards": MetadataValue.int(len(result.shards)),
            "model": MetadataValue.text(str(result.model)),
            **affected_metadata(result.affected_shards, "their scores changed or the threshold moved across them"),
        }
    )


@stage_asset("judge_scores", kinds={"pytorch", "parquet"})
def judge_scores(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    quality_settings: QualitySettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    judge = quality_settings.config().judge
    scorer = load_vlm(judge.model, judge.backend, mlflow, store) if judge.mode == PAIRS else None
    return per_shard(
        context,
        store,
        mlflow,
        "judge_scores",
        guardrails=guardrail_settings.config(),
        op=lambda shard: judge_score_shard(store, shard, scorer, judge.batch_size),
        extra_metadata={"model": MetadataValue.text(scorer.name if scorer else "judge not in mode 'pairs'")},
    )


@stage_asset("judge_score_threshold", kinds={"python", "json"})
def judge_score_threshold(
    context: AssetExecutionContext, lake: LakeResource, quality_settings: QualitySettings
) -> MaterializeResult:
    store = lake.lake()
    judge = quality_settings.config().judge
    fractions = (judge.similarity_top_fraction, judge.likelihood_top_fraction) if judge.mode == PAIRS else (None, None)
    scored = done_shards(store, graph.stage("judge_scores"), context.instance.get_dynamic_partitions(shards.name))
    result = judge_threshold(store, scored, *fractions, tolerance=judge.tolerance)
    unset = MetadataValue.text(result.note or "score not used")
    value = {
        name: MetadataValue.float(v) if v is not None else unset
        for name, v in (("similarity", result.similarity), ("likelihood", result.likelihood))
    }
    return MaterializeResult(
        metadata={
            "similarity_threshold": value["similarity"],
            "likelihood_threshold": value["likelihood"],
            "top_fractions": MetadataValue.text(str(fractions)),
            "scores": MetadataValue.int(result.scores),
            "shards": MetadataValue.int(result.shards),
            "model": MetadataValue.text(result.model or "none"),
            **affected_metadata(result.affected_shards, "their scores changed or a threshold moved across them"),
        }
    )


@stage_asset("quality", kinds={"pytorch", "parquet"})
def quality(
    context: AssetExecutionContext,
    lake: LakeResource,
    mlflow: MlflowResource,
    quality_settings: QualitySettings,
    guardrail_settings: GuardrailSettings,
) -> MaterializeResult:
    store = lake.lake()
    config = quality_settings.config()
    judge = load_vlm(config.judge.model, config.judge.backend, mlflow, store)
    return per_shard(
        context,
        store,
        mlflow,
        "quality",
        guardrails=guardrail_settings.config(),
        op=lambda shard: quality_shard(store, shard, config, judge=judge),
        preview=lambda shard: store.read_parquet(
            graph.stage("quality").table(shard), columns=["uid", "clip_score", "judge_score", "kept", "reason"]
        ).slice(0, 10),
        extra_metadata={"judge": MetadataValue.text(judge.name if judge else "no judge configured")},
    )
