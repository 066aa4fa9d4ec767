"""The pair judge's scores: per shard first, then global top-fraction thresholds, like the CLIP score.

A pair judge (the bootstrapped CoCa, :class:`ops.vlm.backend.PairScorer`) scores each (image, raw caption) pair
two ways: ``judge_similarity``, the contrastive similarity of image and caption, and ``judge_likelihood``, the
caption's mean log-probability per token under the judge's captioner given the image. Neither has a scale
that means anything across models, so, as for the CLIP score (DataComp's rule), every sample entering the quality
stage is scored into ``quality/judge_scores/<shard>.parquet`` before anything is decided, and the thresholds are
top fractions computed once over ALL shards (:func:`judge_threshold`, ``quality/judge_threshold.json``) by the
same exact, streaming radix select as the CLIP threshold (:mod:`ops.quality.topfraction`): one shard's scores in
memory at a time. The quality stage then keeps a pair when each configured score reaches its threshold, and
records which one it missed.

The score table belongs to the quality stage (it is not a stage of the graph of its own): whoever drives the pair
judge scores every shard (:func:`judge_score_shard`) and computes the thresholds before the quality stage runs
(see docs/decisions.md, "Bootstrapped CoCa: captioner and pair judge"); the quality stage refuses a shard whose
scores are missing, are for other samples, or are not those the thresholds were computed over. Scoring every
entering sample, not only what the cheaper filters keep, makes the table describe the pool and stay valid when the
heuristics or the CLIP threshold change; the fractions are therefore shares of the pool entering quality. The
pass is resumable (:func:`ops.quality.checkpoint.run_batches`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from infra.lake import Lake
from ops import graph
from ops.ledger import check_ledger
from ops.quality import reasons as R
from ops.quality.checkpoint import run_batches
from ops.quality.topfraction import NoScores, top_fraction_threshold
from ops.report import ConservationError, StageReport
from ops.stage import entering, table_digest
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


def home() -> str:
    """The lake folder of the judge's score tables, inside the quality stage's own."""
    return f"{graph.stage('quality').home}/judge_scores"


def scores_table(shard: str) -> str:
    return f"{home()}/{shard}.parquet"


def scores_report(shard: str) -> str:
    return f"{home()}/{shard}.report.json"


def judge_score_shard(lake: Lake, shard: str, scorer: PairScorer, batch_size: int = 32) -> StageReport:
    """Score every sample entering quality; publish the table, then its report. Kept means "has finite scores".

    The table is checked like a stage's (one row per entering sample, in order, reasons from
    ``JUDGE_SCORE_REASONS``) before it is written, so a threshold never reads a table that lost samples.
    """
    report = StageReport(stage="judge_scores", shard=shard)
    with report.timed():
        samples = entering(lake, graph.stage("quality"), shard, ["key", "text"])
        text_of = dict(zip(samples["uid"].to_pylist(), samples["text"].to_pylist(), strict=True))
        before = scorer.model_seconds

        def process(uids: list[str], images: list[Image.Image | None]) -> pa.Table:
            ok = [i for i, im in enumerate(images) if im is not None]
            columns = {name: np.full(len(uids), np.nan, dtype=np.float32) for name in SCORES}
            if ok:
                scores = scorer.score_pairs([images[i] for i in ok], [text_of[uids[i]] for i in ok])
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
        rows, checkpoint = run_batches(lake, home(), shard, settings, pairs, batch_size, SCHEMA, process)
        table = rows.take(pc.index_in(samples["uid"], value_set=rows["uid"]))
        problems = check_ledger(table, R.JUDGE_SCORE_REASONS, expected_uids=samples["uid"].to_pylist())
        if problems:
            raise ConservationError(f"judge scores of {shard}: refusing to publish: {'; '.join(problems)}")
        report.count(table["kept"].to_pylist(), table["reason"].to_pylist())
        report.extra.update(model=scorer.name, model_seconds=scorer.model_seconds - before)
        lake.write_parquet(scores_table(shard), table)
    report.check()
    lake.write_json(scores_report(shard), report.to_dict())
    checkpoint.clear()
    return report


def read_judge_scores(lake: Lake, shard: str, model: str) -> pa.Table | None:
    """The shard's published scores when ``model`` wrote them, else None."""
    if not lake.exists(scores_report(shard)):
        return None
    if lake.read_json(scores_report(shard)).get("extra", {}).get("model") != model:
        return None
    return lake.read_parquet(scores_table(shard))


@dataclass(frozen=True)
class JudgeThreshold:
    """Global thresholds keeping the top fraction of all scored pairs, per score (None: that score not used)."""

    similarity: float | None
    likelihood: float | None
    similarity_top_fraction: float | None
    likelihood_top_fraction: float | None
    scores: int
    shards: int
    model: str
    digests: dict[str, str]  # per shard, of the score table the thresholds were computed over

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
) -> JudgeThreshold:
    """Each configured score's top-fraction threshold over the finite scores of all ``shards``, written to the lake.

    A pair is kept when it reaches every configured threshold, so with both set the judge keeps at most the
    smaller fraction of the pool (how much less depends on how the two scores agree). The value is DataComp's
    rule, exact, whatever the shard order or the spread of samples over shards.
    """
    if similarity_top_fraction is None and likelihood_top_fraction is None:
        raise ValueError("a pair judge needs similarity_top_fraction, likelihood_top_fraction or both")
    for fraction in (similarity_top_fraction, likelihood_top_fraction):
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise ValueError(f"top fractions must be in (0, 1], got {fraction}")
    shards = sorted(set(shards))
    models = {lake.read_json(scores_report(shard)).get("extra", {}).get("model") for shard in shards}
    digests = {shard: _digest(lake.read_parquet(scores_table(shard))) for shard in shards}
    if len(models) > 1:
        raise ValueError(f"judge scores from different models cannot share a threshold: {sorted(map(str, models))}")

    def kept(name: str) -> Callable[[], Iterator[np.ndarray]]:
        def batches() -> Iterator[np.ndarray]:
            for shard in shards:
                table = lake.read_parquet(scores_table(shard), columns=[name, "kept"]).filter(pc.field("kept"))
                yield table[name].to_numpy().astype(np.float32, copy=False)

        return batches

    counted: dict[str, int] = {}

    def threshold(name: str, fraction: float | None) -> float | None:
        if fraction is None:
            return None
        try:
            value, counted[name] = top_fraction_threshold(kept(name), fraction)
        except NoScores:
            raise ValueError(f"no finite {name} score in any shard: cannot compute a top-fraction threshold") from None
        return value

    result = JudgeThreshold(
        similarity=threshold("judge_similarity", similarity_top_fraction),
        likelihood=threshold("judge_likelihood", likelihood_top_fraction),
        similarity_top_fraction=similarity_top_fraction,
        likelihood_top_fraction=likelihood_top_fraction,
        scores=max(counted.values()),
        shards=len(shards),
        model=str(models.pop()) if models else "",
        digests=digests,
    )
    lake.write_json(THRESHOLD_PATH, asdict(result))
    return result


def read_judge_threshold(
    lake: Lake, model: str, similarity_top_fraction: float | None, likelihood_top_fraction: float | None
) -> JudgeThreshold:
    """The published thresholds; refuses ones computed for another model or other fractions."""
    if not lake.exists(THRESHOLD_PATH):
        raise FileNotFoundError(f"{THRESHOLD_PATH} is missing: compute judge_threshold over all shards first")
    data = JudgeThreshold(**lake.read_json(THRESHOLD_PATH))
    wanted = (model, similarity_top_fraction, likelihood_top_fraction)
    found = (data.model, data.similarity_top_fraction, data.likelihood_top_fraction)
    if found != wanted:
        raise ValueError(f"{THRESHOLD_PATH} is for (model, similarity, likelihood fractions) {found}, not {wanted}")
    return data


def _digest(scores: pa.Table) -> str:
    return table_digest(scores.select(["uid", *SCORES, "kept"]))


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
            "judge_score_shard for it, then judge_threshold"
        )
    if threshold.digests.get(shard) != _digest(scores):
        raise ValueError(
            f"{THRESHOLD_PATH} was computed without shard {shard!r}'s current scores: re-run judge_threshold"
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
