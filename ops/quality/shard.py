"""The quality op: one shard's entering samples in, ``quality/<shard>.parquet`` out, every sample a row.

The metadata heuristics ran before, as their own stage (:mod:`ops.quality.heuristics`); here the model filters
run, cheapest first, each later one seeing only what the earlier ones kept: the CLIP score (read from the
``clip_scores`` stage's table, which the graph runs first), then the VLM judge. The tar is opened only when a
model filter has samples to look at. A filter without a model is not run and the report says so; nothing is
scored or kept on a model's behalf that did not run. The judge is a prompted VLM (modes ``generate``/``logits``)
or a pair scorer such as the bootstrapped CoCa (mode ``pairs``: scores and global thresholds read from the
``judge_scores`` and ``judge_score_threshold`` stages, :mod:`ops.quality.judge_scores`); ``judge_model`` names
the model that judged each pair.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from infra.lake import Lake
from ops import graph
from ops.quality import reasons as R
from ops.quality.checkpoint import Checkpoint, run_batches
from ops.quality.clip_score import read_clip_scores, read_clip_threshold, scores_model
from ops.quality.config import QualityConfig
from ops.quality.judge import PAIRS, JudgeConfig, check_judge, judge_pairs
from ops.quality.judge_scores import JudgeThreshold, pair_verdicts, read_judge_threshold
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage
from ops.vlm.backend import PairScorer, VlmBackend

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


def quality_shard(
    lake: Lake, shard: str, config: QualityConfig, *, judge: VlmBackend | PairScorer | None = None
) -> StageReport:
    """Decide every sample curation kept; the CLIP scores are the ``clip_scores`` stage's, never recomputed here.
    A judge that cannot judge in the configured mode is refused before any work is done."""
    if judge is not None:
        check_judge(judge, config.judge)

    def decide(samples: pa.Table) -> Decisions:
        uids = samples["uid"].to_pylist()
        texts = samples["text"].to_pylist()
        reasons = [""] * len(uids)
        extra: dict = {}
        clip_scores: list[float | None] = [None] * len(uids)
        model = scores_model(lake, shard) if config.clip.configured else None
        if not config.clip.configured:
            extra["clip_score"] = "no CLIP model configured"
        elif model is None:
            extra["clip_score"] = "no CLIP model to score with yet (see clip_scores)"
        else:
            scores, model = read_clip_scores(lake, shard, uids)
            clip = config.clip
            threshold = (
                clip.threshold
                if clip.threshold is not None
                else read_clip_threshold(lake, model, float(clip.top_fraction))
            )
            values, clip_reasons = scores["clip_score"].to_pylist(), scores["reason"].to_pylist()
            for i in range(len(uids)):
                clip_scores[i] = values[i]
                if not reasons[i]:
                    reasons[i] = clip_reasons[i] or (R.CLIP_SCORE_LOW if values[i] < threshold else "")
            extra.update(clip_model=model, clip_threshold=threshold)

        verdicts: dict[str, dict] = {}
        staged = None
        model_seconds = 0.0
        if judge is None:
            extra["judge"] = "no judge configured"
        elif config.judge.mode == PAIRS:
            verdicts, thresholds = _pair_judge(lake, shard, judge, config.judge, uids, reasons)
            extra.update(
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
            extra.update(
                judge=judge.name,
                judge_mode=config.judge.mode,
                judge_threshold=config.judge.threshold,
                judge_errors=json.dumps(dict(sorted(errors.items()))),
            )
        extra["model_seconds"] = model_seconds

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
        return Decisions(table, extra=extra, after_publish=staged.clear if staged is not None else None)

    columns = ["key", "text"]
    return run_shard_stage(lake, graph.stage("quality"), shard, decide, columns=columns)


def _pair_judge(
    lake: Lake, shard: str, scorer: PairScorer, config: JudgeConfig, uids: list[str], reasons: list[str]
) -> tuple[dict[str, dict], JudgeThreshold]:
    """Pair-judge the samples every earlier filter kept (their reasons are set in place) from the shard's published
    scores; verdicts by uid and the global thresholds applied."""
    threshold = read_judge_threshold(lake, scorer.name, config.similarity_top_fraction, config.likelihood_top_fraction)
    todo = [i for i, r in enumerate(reasons) if not r]
    verdicts = pair_verdicts(lake, shard, scorer.name, threshold, uids, [uids[i] for i in todo])
    for i in todo:
        reasons[i] = verdicts[uids[i]]["reason"]
    return verdicts, threshold


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
    stage = f"{graph.stage('quality').home}/judge"
    table, checkpoint = run_batches(lake, stage, shard, settings, pairs, config.batch_size, _JUDGE_SCHEMA, process)
    return {row["uid"]: row for row in table.to_pylist()}, checkpoint
