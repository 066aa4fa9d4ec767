"""The quality op: one shard's entering samples in, ``quality/<shard>.parquet`` out, every sample a row.

Filters run cheapest first and each later one only sees what the earlier ones kept: metadata heuristics (no
pixels), the CLIP score (read from ``quality/clip/<shard>.parquet``, computed first if missing), then the VLM
judge. The tar is opened only when a model filter has samples to look at. A filter without a model is not run
and the report says so; nothing is scored or kept on a model's behalf that did not run. The judge is a prompted
VLM (modes ``generate``/``logits``) or a pair scorer such as the bootstrapped CoCa (mode ``pairs``, scores and
global thresholds from :mod:`ops.quality.judge_scores`); ``judge_model`` names the model that judged each pair.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from infra.lake import Lake
from ops.layout import report_path, table_path
from ops.quality import reasons as R
from ops.quality.checkpoint import Checkpoint, run_batches
from ops.quality.clip_score import ClipScorer, clip_score_shard, read_clip_scores, read_clip_threshold
from ops.quality.heuristics import DATACOMP_BASIC, HeuristicConfig, heuristic_reason
from ops.quality.judge import PAIRS, JudgeConfig, check_judge, judge_pairs
from ops.quality.judge_scores import JudgeThreshold, pair_verdicts, read_judge_threshold
from ops.quality.samples import default_upstream, load_samples
from ops.report import StageReport
from ops.vlm.backend import PairScorer, VlmBackend

STAGE = "quality"
SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("clip_score", pa.float32()),
        ("judge_score", pa.float32()),
        ("judge_answer", pa.string()),
        ("judge_error", pa.string()),
        ("judge_digit_mass", pa.float32()),
        ("judge_similarity", pa.float32()),
        ("judge_likelihood", pa.float32()),
        ("judge_model", pa.string()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
    ]
)
_JUDGE_SCHEMA = pa.schema(
    [(f.name, f.type) for f in SCHEMA if f.name.startswith("judge_")] + [("uid", pa.string()), ("reason", pa.string())]
)


@dataclass(frozen=True)
class QualityConfig:
    """Which filters decide and where their thresholds sit; the models themselves are passed to the op.

    With a CLIP model, exactly one of ``clip_threshold`` (absolute) or ``clip_top_fraction`` (global, read from
    ``quality/clip_threshold.json``) applies.
    """

    heuristics: HeuristicConfig = DATACOMP_BASIC
    clip_threshold: float | None = None
    clip_top_fraction: float | None = None
    clip_batch_size: int = 64
    judge: JudgeConfig = field(default_factory=JudgeConfig)


def quality_shard(
    lake: Lake,
    shard: str,
    config: QualityConfig,
    *,
    clip: ClipScorer | None = None,
    judge: VlmBackend | PairScorer | None = None,
    upstream: str | None = None,
) -> StageReport:
    """Decide every sample the upstream stage kept; publish the table, then the report."""
    if judge is not None:
        check_judge(judge, config.judge)
    report = StageReport(stage=STAGE, shard=shard)
    with report.timed():
        upstream = upstream or default_upstream(lake, shard)
        samples = load_samples(lake, shard, upstream)
        uids = samples["uid"].to_pylist()
        texts = samples["text"].to_pylist()
        reasons = [
            heuristic_reason(t, lang, w, h, config.heuristics)
            for t, lang, w, h in zip(
                texts,
                samples["lang"].to_pylist(),
                samples["original_width"].to_pylist(),
                samples["original_height"].to_pylist(),
                strict=True,
            )
        ]
        report.extra.update(upstream=upstream, heuristics=json.dumps(asdict(config.heuristics), default=str))
        model_seconds = 0.0

        clip_scores: list[float | None] = [None] * len(uids)
        if clip is None:
            report.extra["clip_score"] = "no CLIP model configured"
        else:
            threshold = _clip_threshold(lake, clip, config)
            scores = read_clip_scores(lake, shard, clip.name, upstream)
            if scores is None or not set(uids) <= set(scores["uid"].to_pylist()):  # upstream changed since
                computed = clip_score_shard(lake, shard, clip, upstream, config.clip_batch_size)
                model_seconds += computed.extra["model_seconds"]
                scores = read_clip_scores(lake, shard, clip.name, upstream)
            row_of = {uid: i for i, uid in enumerate(scores["uid"].to_pylist())}
            clip_values, clip_reasons = scores["clip_score"].to_pylist(), scores["reason"].to_pylist()
            for i, uid in enumerate(uids):
                score, reason = clip_values[row_of[uid]], clip_reasons[row_of[uid]]
                clip_scores[i] = score
                if not reasons[i]:
                    reasons[i] = reason or (R.CLIP_SCORE_LOW if score < threshold else "")
            report.extra.update(clip_model=clip.name, clip_threshold=threshold)

        verdicts: dict[str, dict] = {}
        staged = None
        if judge is None:
            report.extra["judge"] = "no judge configured"
        elif config.judge.mode == PAIRS:
            verdicts, seconds, thresholds = _pair_judge(lake, shard, judge, config.judge, uids, reasons, upstream)
            model_seconds += seconds
            report.extra.update(
                judge=judge.name,
                judge_mode=PAIRS,
                judge_similarity_threshold=thresholds.similarity,
                judge_likelihood_threshold=thresholds.likelihood,
            )
        else:
            before = judge.model_seconds
            todo = [i for i, r in enumerate(reasons) if not r]
            pairs = [(uids[i], texts[i]) for i in todo]
            verdicts, staged = _run_judge(lake, shard, judge, config.judge, pairs, samples)
            for i in todo:
                reasons[i] = verdicts[uids[i]]["reason"]
            model_seconds += judge.model_seconds - before
            errors = Counter(v["judge_error"] for v in verdicts.values() if v["judge_error"])
            report.extra.update(
                judge=judge.name,
                judge_mode=config.judge.mode,
                judge_threshold=config.judge.threshold,
                judge_errors=json.dumps(dict(sorted(errors.items()))),
            )

        judged = [verdicts.get(uid, {}) for uid in uids]
        table = pa.table(
            {
                "uid": uids,
                "clip_score": pa.array(clip_scores, pa.float32()),
                **{name: [v.get(name) for v in judged] for name in _JUDGE_SCHEMA.names if name.startswith("judge_")},
                "kept": [not r for r in reasons],
                "reason": reasons,
            },
            schema=SCHEMA,
        )
        report.count(table["kept"].to_pylist(), reasons)
        report.extra["model_seconds"] = model_seconds
        lake.write_parquet(table_path(STAGE, shard), table)
    report.check()
    lake.write_json(report_path(STAGE, shard), report.to_dict())
    if staged is not None:
        staged.clear()
    return report


def _clip_threshold(lake: Lake, clip: ClipScorer, config: QualityConfig) -> float:
    if (config.clip_threshold is None) == (config.clip_top_fraction is None):
        raise ValueError("with a CLIP model, set exactly one of clip_threshold or clip_top_fraction")
    if config.clip_threshold is not None:
        return float(config.clip_threshold)
    return read_clip_threshold(lake, clip.name, config.clip_top_fraction)


def _pair_judge(
    lake: Lake,
    shard: str,
    scorer: PairScorer,
    config: JudgeConfig,
    uids: list[str],
    reasons: list[str],
    upstream: str,
) -> tuple[dict[str, dict], float, JudgeThreshold]:
    """Pair-judge the samples every earlier filter kept (their reasons are set in place); verdicts by uid, the
    seconds spent in the model and the global thresholds applied."""
    threshold = read_judge_threshold(lake, scorer.name, config.similarity_top_fraction, config.likelihood_top_fraction)
    todo = [i for i, r in enumerate(reasons) if not r]
    verdicts, seconds = pair_verdicts(
        lake, shard, scorer, threshold, [uids[i] for i in todo], upstream, config.batch_size
    )
    for i in todo:
        reasons[i] = verdicts[uids[i]]["reason"]
    return verdicts, seconds, threshold


def _run_judge(
    lake: Lake,
    shard: str,
    backend: VlmBackend,
    config: JudgeConfig,
    todo: list[tuple[str, str | None]],
    samples: pa.Table,
) -> tuple[dict[str, dict], Checkpoint]:
    """Judge ``todo`` (uid, caption) resumably: verdict columns by uid, and the checkpoint to clear once published."""
    caption_of = dict(todo)
    keys = samples["key"].take(pc.index_in(pa.array([u for u, _ in todo], pa.string()), value_set=samples["uid"]))

    def process(uids: list[str], images: list[Image.Image | None]) -> pa.Table:
        ok = [i for i, im in enumerate(images) if im is not None]
        found = judge_pairs(backend, [images[i] for i in ok], [caption_of[uids[i]] for i in ok], config)
        rows = {name: [None] * len(uids) for name in _JUDGE_SCHEMA.names}
        rows["uid"] = uids
        rows["reason"] = [R.UNDECODABLE] * len(uids)
        for i, verdict in zip(ok, found, strict=True):
            rows["judge_score"][i] = verdict.score
            rows["judge_answer"][i] = verdict.answer
            rows["judge_error"][i] = verdict.error or None
            rows["judge_digit_mass"][i] = verdict.digit_mass
            rows["judge_model"][i] = backend.name
            rows["reason"][i] = verdict.reason
        return pa.table(rows, schema=_JUDGE_SCHEMA)

    settings = {"judge": backend.name, "config": asdict(config)}
    pairs = list(zip([u for u, _ in todo], keys.to_pylist(), strict=True))
    stage = f"{STAGE}/judge"
    table, checkpoint = run_batches(lake, stage, shard, settings, pairs, config.batch_size, _JUDGE_SCHEMA, process)
    return {row["uid"]: row for row in table.to_pylist()}, checkpoint
