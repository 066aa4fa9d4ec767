"""The pair judge's scores: per shard first, then global top-fraction thresholds, like the CLIP score.

A pair judge (the bootstrapped CoCa, :class:`ops.vlm.backend.PairScorer`) scores each (image, raw caption) pair
two ways: ``judge_similarity``, the contrastive similarity of image and caption, and ``judge_likelihood``, the
caption's mean log-probability per token under the judge's captioner given the image. Neither has a scale
that means anything across models, so, as for the CLIP score (DataComp's rule), every sample entering the quality
stage is scored by the ``judge_scores`` stage (:func:`judge_score_shard`, ``quality/judge_scores/<shard>.parquet``)
before anything is decided, and the ``judge_score_threshold`` step computes the thresholds once over ALL shards
(:func:`judge_threshold`, ``quality/judge_threshold.json``) by the same exact, streaming radix select as the CLIP
threshold (:mod:`ops.quality.topfraction`): one shard's scores in memory at a time. The quality stage then keeps a
pair when each configured score reaches its threshold, and records which one it missed; it refuses a shard whose
scores are missing, are for other samples, or are not those the thresholds were computed over.

Scoring every sample entering quality (what the heuristics stage kept), not only what the CLIP score keeps, makes
the table describe that pool and stay valid when the CLIP threshold changes; the fractions are therefore shares
of the pool entering quality. The pass is resumable (:func:`ops.quality.checkpoint.run_batches`). When the judge
is not a pair judge, both steps still run, cheaply: every sample is recorded as unscored (``judge_off``) and the
thresholds as not configured, so the graph is the same in every profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from infra.lake import Lake
from ops import graph
from ops.quality import reasons as R
from ops.quality.checkpoint import run_batches
from ops.quality.topfraction import NoScores, top_fraction_threshold
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage, table_digest
from ops.vlm.backend import PairScorer

THRESHOLD_PATH = "quality/judge_threshold.json"
SCORES = ("judge_similarity", "judge_likelihood")
SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("judge_similarity", pa.float32()),
        ("judge_likelihood", pa.float32()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
    ]
)


def judge_score_shard(lake: Lake, shard: str, scorer: PairScorer | None, batch_size: int = 32) -> StageReport:
    """Score every sample entering quality and publish the ``judge_scores`` table, then its report. Kept means
    "has finite scores". Without a pair judge every sample is recorded as unscored (``judge_off``), never given a
    made-up score, and no image is read."""
    stage = graph.stage("judge_scores")

    def decide(samples: pa.Table) -> Decisions:
        n = samples.num_rows
        if scorer is None:
            off = {name: pa.nulls(n, pa.float32()) for name in SCORES}
            table = pa.table({"uid": samples["uid"], **off, "kept": pa.array([False] * n, pa.bool_())})
            table = table.append_column("reason", pa.array([R.JUDGE_OFF] * n, pa.string()))
            return Decisions(table.cast(SCHEMA), extra={"model": None})
        text_of = dict(zip(samples["uid"].to_pylist(), samples["text"].to_pylist(), strict=True))
        before = scorer.model_seconds

        def process(uids: list[str], images: list[Image.Image | None]) -> pa.Table:
            ok = [i for i, im in enumerate(images) if im is not None]
            columns = {name: np.full(len(uids), np.nan, dtype=np.float32) for name in SCORES}
            if ok:
                scores = scorer.score_pairs([images[i] for i in ok], [text_of[uids[i]] or "" for i in ok])
                columns["judge_similarity"][ok] = scores.similarity
                columns["judge_likelihood"][ok] = scores.likelihood
            finite = np.isfinite(columns["judge_similarity"]) & np.isfinite(columns["judge_likelihood"])
            reasons = [
                R.UNDECODABLE if images[i] is None else ("" if finite[i] else R.NAN_SCORE) for i in range(len(uids))
            ]
            return pa.table(
                {"uid": uids, **columns, "kept": [not r for r in reasons], "reason": reasons}, schema=SCHEMA
            )

        pairs = list(zip(samples["uid"].to_pylist(), samples["key"].to_pylist(), strict=True))
        settings = {"model": scorer.name, "batch_size": batch_size}
        rows, checkpoint = run_batches(lake, stage.home, shard, settings, pairs, batch_size, SCHEMA, process)
        table = rows.take(pc.index_in(samples["uid"], value_set=rows["uid"]))
        extra = {"model": scorer.name, "model_seconds": scorer.model_seconds - before}
        return Decisions(table, extra=extra, after_publish=checkpoint.clear)

    columns = ["key", "text"] if scorer is not None else []
    return run_shard_stage(lake, stage, shard, decide, columns=columns)


def scores_model(lake: Lake, shard: str) -> str | None:
    """The model that wrote the shard's published judge scores (None when it has none, or the judge was off)."""
    rel = graph.stage("judge_scores").report(shard)
    return lake.read_json(rel).get("extra", {}).get("model") if lake.exists(rel) else None


def read_judge_scores(lake: Lake, shard: str, model: str) -> pa.Table | None:
    """The shard's published scores when ``model`` wrote them, else None."""
    if scores_model(lake, shard) != model:
        return None
    return lake.read_parquet(graph.stage("judge_scores").table(shard))


@dataclass(frozen=True)
class JudgeThreshold:
    """Global thresholds keeping the top fraction of all scored pairs, per score (None: that score not used).

    A threshold in force follows the exact value of the current pool only when the share it keeps drifts more
    than ``tolerance`` from its fraction, so adding a shard rarely changes older shards' decisions.
    ``affected_shards`` are the shards whose quality decisions this publication may change: those whose scores
    changed, and those holding a score between the old and the new value of a threshold that moved (all of them
    when the model or the fractions changed). ``note`` says why there are no thresholds, when there are none.
    """

    similarity: float | None
    likelihood: float | None
    similarity_top_fraction: float | None
    likelihood_top_fraction: float | None
    scores: int
    shards: int
    model: str
    digests: dict[str, str]  # per shard, of the score table the thresholds were computed over
    tolerance: float = 0.0
    affected_shards: list[str] = field(default_factory=list)
    note: str = ""

    def reason(self, similarity: float | None, likelihood: float | None) -> str:
        """Why a pair with these scores is dropped, or "" when it is kept (a missing score is not a number)."""
        values = (similarity, likelihood)
        if any(v is None or not math.isfinite(v) for v in values):
            return R.NAN_SCORE
        if self.similarity is not None and similarity < self.similarity:
            return R.JUDGE_SIMILARITY_LOW
        if self.likelihood is not None and likelihood < self.likelihood:
            return R.JUDGE_LIKELIHOOD_LOW
        return ""


def judge_threshold(
    lake: Lake,
    shards: Sequence[str],
    similarity_top_fraction: float | None,
    likelihood_top_fraction: float | None,
    tolerance: float = 0.0,
) -> JudgeThreshold:
    """Each configured score's top-fraction threshold over the finite scores of all ``shards``, written to the lake.

    A pair is kept when it reaches every configured threshold, so with both set the judge keeps at most the
    smaller fraction of the pool (how much less depends on how the two scores agree). The exact value is DataComp's
    rule, whatever the shard order or the spread of samples over shards. With neither fraction (the judge is not
    in mode ``pairs``) nothing is computed, but the per-shard digests and the shards that changed are published
    all the same, so the step means the same thing in every profile.
    """
    fractions = (similarity_top_fraction, likelihood_top_fraction)
    if any(f is not None and not 0.0 < f <= 1.0 for f in fractions):
        raise ValueError(f"top fractions must be in (0, 1], got {fractions}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be at least 0, got {tolerance}")
    table_of = graph.stage("judge_scores").table
    shards = sorted(set(shards))
    by_model: dict[str | None, list[str]] = {}
    for shard in shards:
        by_model.setdefault(scores_model(lake, shard), []).append(shard)
    digests = {shard: _digest(lake.read_parquet(table_of(shard))) for shard in shards}
    previous = JudgeThreshold(**lake.read_json(THRESHOLD_PATH)) if lake.exists(THRESHOLD_PATH) else None
    changed = sorted(s for s in shards if previous is None or previous.digests.get(s) != digests[s])
    if fractions == (None, None):
        # turning the judge off drops thresholds that were in force: every shard's decisions may change
        was_on = previous is not None and (previous.similarity, previous.likelihood) != (None, None)
        affected = shards if was_on else changed
        note = "no pair judge configured (judge mode is not 'pairs')"
        result = JudgeThreshold(None, None, None, None, 0, len(shards), "", digests, tolerance, affected, note)
        lake.write_json(THRESHOLD_PATH, asdict(result))
        return result
    if len(by_model) > 1:
        majority = max(by_model, key=lambda m: (m is not None, len(by_model[m])))
        stale = sorted(s for m, group in by_model.items() if m != majority for s in group)
        raise ValueError(
            f"judge scores from different models cannot share a threshold: {sorted(map(str, by_model))}; "
            f"re-run judge_scores for {stale}"
        )
    model = next(iter(by_model), None)
    if shards and model is None:
        raise ValueError(f"no pair judge scored {shards}: re-run judge_scores with the judge in mode 'pairs'")

    def kept(name: str) -> Callable[[], Iterator[np.ndarray]]:
        def batches() -> Iterator[np.ndarray]:
            for shard in shards:
                table = lake.read_parquet(table_of(shard), columns=[name, "kept"]).filter(pc.field("kept"))
                yield table[name].to_numpy().astype(np.float32, copy=False)

        return batches

    comparable = previous is not None and (
        previous.model,
        previous.similarity_top_fraction,
        previous.likelihood_top_fraction,
    ) == (model, *fractions)
    counted: dict[str, int] = {}

    def threshold(name: str, fraction: float | None, old: float | None) -> float | None:
        if fraction is None:
            return None
        try:
            exact, n = top_fraction_threshold(kept(name), fraction)
        except NoScores:
            raise ValueError(f"no finite {name} score in any shard: cannot compute a top-fraction threshold") from None
        counted[name] = n
        if comparable and old is not None and abs(_share_at_least(kept(name)(), old, n) - fraction) <= tolerance:
            return old
        return exact

    similarity = threshold("judge_similarity", similarity_top_fraction, previous.similarity if previous else None)
    likelihood = threshold("judge_likelihood", likelihood_top_fraction, previous.likelihood if previous else None)
    if comparable:
        moved = set(changed)
        for name, old, new in (
            ("judge_similarity", previous.similarity, similarity),
            ("judge_likelihood", previous.likelihood, likelihood),
        ):
            if old != new:
                low, high = sorted((old, new))
                moved |= {s for s, v in zip(shards, kept(name)(), strict=True) if np.any((v >= low) & (v < high))}
        affected = sorted(moved)
    else:
        affected = shards
    result = JudgeThreshold(
        similarity=similarity,
        likelihood=likelihood,
        similarity_top_fraction=similarity_top_fraction,
        likelihood_top_fraction=likelihood_top_fraction,
        scores=max(counted.values()),
        shards=len(shards),
        model=str(model),
        digests=digests,
        tolerance=tolerance,
        affected_shards=affected,
    )
    lake.write_json(THRESHOLD_PATH, asdict(result))
    return result


def read_judge_threshold(
    lake: Lake, model: str, similarity_top_fraction: float | None, likelihood_top_fraction: float | None
) -> JudgeThreshold:
    """The published thresholds; refuses ones computed for another model or other fractions."""
    if not lake.exists(THRESHOLD_PATH):
        raise FileNotFoundError(f"{THRESHOLD_PATH} is missing: run judge_score_threshold over all shards first")
    data = JudgeThreshold(**lake.read_json(THRESHOLD_PATH))
    wanted = (model, similarity_top_fraction, likelihood_top_fraction)
    found = (data.model, data.similarity_top_fraction, data.likelihood_top_fraction)
    if found != wanted:
        raise ValueError(
            f"{THRESHOLD_PATH} is for (model, similarity, likelihood fractions) {found}, not {wanted}: "
            "re-run judge_score_threshold"
        )
    return data


def _digest(scores: pa.Table) -> str:
    return table_digest(scores.select(["uid", *SCORES, "kept"]))


def _share_at_least(parts: Iterator[np.ndarray], threshold: float, n: int) -> float:
    """The share of the ``n`` scores in ``parts`` at or above ``threshold``, one shard in memory at a time."""
    return sum(int(np.count_nonzero(v >= threshold)) for v in parts) / n


def pair_verdicts(
    lake: Lake,
    shard: str,
    model: str,
    threshold: JudgeThreshold,
    entering_uids: Sequence[str],
    uids: Sequence[str],
) -> dict[str, dict]:
    """Verdict columns by uid for ``uids`` (the pairs every earlier filter kept), from the shard's score table.

    The table must score exactly the samples entering quality (``entering_uids``), be written by ``model``, and be
    the one the thresholds were computed over. Anything else is refused, naming what to re-run: judging a shard
    against thresholds computed without its current scores would make its decisions depend on a stale pool.
    """
    scores = read_judge_scores(lake, shard, model)
    if scores is None or scores["uid"].to_pylist() != list(entering_uids):
        raise ValueError(
            f"shard {shard!r} has no judge scores by {model} for the samples entering quality: run "
            "judge_scores for it, then judge_score_threshold"
        )
    if threshold.digests.get(shard) != _digest(scores):
        raise ValueError(
            f"{THRESHOLD_PATH} was computed without shard {shard!r}'s current scores: re-run judge_score_threshold"
        )
    rows = {row["uid"]: row for row in scores.to_pylist()}
    verdicts = {}
    for uid in uids:
        row = rows[uid]
        similarity, likelihood = row["judge_similarity"], row["judge_likelihood"]
        reason = row["reason"] or threshold.reason(similarity, likelihood)
        verdicts[uid] = {
            "judge_similarity": similarity,
            "judge_likelihood": likelihood,
            "judge_model": model if row["reason"] != R.UNDECODABLE else None,
            "reason": reason,
        }
    return verdicts
