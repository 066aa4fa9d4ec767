"""CLIP score: cosine similarity of an open_clip model's normalised image and text embeddings for each pair.

The model comes from an open_clip pretrained tag, a local checkpoint file, or a model logged to MLflow (for
example the CLIP this pipeline trained last time, ``models:/clipfoundry-clip/3``). Scores are model-specific
(DataComp: ViT-B/32 ≥ 0.25 keeps about what ViT-L/14's top 30% keeps), so the raw score of every sample is
stored first, in ``quality/clip/<shard>.parquet``; the filter is then an absolute threshold, or a top fraction
whose threshold :func:`clip_threshold` computes over the scores of ALL shards, exactly as DataComp's
``get_threshold`` does: sort descending, take the value at ``int(n × fraction)``, keep scores ≥ it. That value
moves a little with every shard added; the threshold in force follows it only when the share it keeps drifts past
a tolerance, and the shards whose decisions a move (or a change of their own scores) can change are named.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from infra.lake import Lake
from ops import graph
from ops.quality import reasons as R
from ops.quality.checkpoint import run_batches
from ops.quality.topfraction import top_fraction_threshold
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage, table_digest

THRESHOLD_PATH = "quality/clip_threshold.json"
SCHEMA = pa.schema([("uid", pa.string()), ("clip_score", pa.float32()), ("kept", pa.bool_()), ("reason", pa.string())])


@dataclass(frozen=True)
class ClipModelSpec:
    """Where the CLIP weights come from: exactly one of a pretrained tag or checkpoint path, or an MLflow URI.

    ``model`` is the open_clip architecture name; it also names the tokenizer. A model without weights would
    produce meaningless scores, so a spec with neither source is refused.
    """

    model: str = "ViT-B-32"
    pretrained: str | None = None
    mlflow_uri: str | None = None
    device: str | None = None
    cache_dir: str | None = None
    source: str | None = None  # how people name the weights (``models:/name/3``) when the URI is a storage path

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.mlflow_uri is None):
            raise ValueError("a CLIP score needs weights: give exactly one of `pretrained` or `mlflow_uri`")

    @property
    def name(self) -> str:
        return f"{self.model}@{self.source or self.mlflow_uri or self.pretrained}"


class ClipScorer:
    """Scores (image, text) pairs; the model is loaded on first use, so a scorer costs nothing until needed."""

    def __init__(self, spec: ClipModelSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.model_seconds = 0.0
        self._loaded: tuple[Any, Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any, Any]:
        import open_clip
        import torch

        spec = self.spec
        device = torch.device(spec.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if spec.mlflow_uri is not None:
            import mlflow.pytorch

            model = mlflow.pytorch.load_model(spec.mlflow_uri, map_location=device)
            if not (hasattr(model, "encode_image") and hasattr(model, "encode_text") and hasattr(model, "visual")):
                raise TypeError(f"{spec.mlflow_uri} is a {type(model).__name__}, not an open_clip CLIP model")
            visual = model.visual
            preprocess = open_clip.image_transform(
                visual.image_size,
                is_train=False,
                mean=getattr(visual, "image_mean", None),
                std=getattr(visual, "image_std", None),
            )
        else:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.model, pretrained=spec.pretrained, device=device, cache_dir=spec.cache_dir
            )
        tokenizer = open_clip.get_tokenizer(spec.model)
        return model.to(device).eval(), preprocess, tokenizer, device

    def score(self, images: Sequence[Image.Image], texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity per pair (float32), in input order."""
        import torch

        if not images:
            return np.zeros(0, dtype=np.float32)
        if self._loaded is None:
            self._loaded = self._load()
        model, preprocess, tokenizer, device = self._loaded
        pixels = torch.stack([preprocess(im) for im in images]).to(device)
        tokens = tokenizer(list(texts)).to(device)
        start = time.perf_counter()
        with torch.inference_mode():
            image = model.encode_image(pixels, normalize=True)
            text = model.encode_text(tokens, normalize=True)
            scores = (image * text).sum(dim=-1).float().cpu().numpy()
        self.model_seconds += time.perf_counter() - start
        return scores


def clip_score_shard(lake: Lake, shard: str, scorer: ClipScorer | None, batch_size: int = 64) -> StageReport:
    """Score every sample entering quality and publish ``quality/clip/<shard>.parquet`` and its report.

    The samples entering quality are those the heuristics stage kept: pixels are read only for samples a rule
    has not already refused. Kept means "has a finite score". Without a scorer (none configured,
    or no model registered yet) every sample is recorded as unscored (``no_model``), never given a made-up score.
    """

    def decide(samples: pa.Table) -> Decisions:
        if scorer is None:
            n = samples.num_rows
            unscored = pa.table(
                {"uid": samples["uid"], "clip_score": pa.nulls(n, pa.float32()), "kept": [False] * n},
            ).append_column("reason", pa.array([R.NO_MODEL] * n, pa.string()))
            return Decisions(unscored.select(SCHEMA.names).cast(SCHEMA), extra={"model": None})
        text_of = dict(zip(samples["uid"].to_pylist(), samples["text"].to_pylist(), strict=True))
        model_before = scorer.model_seconds

        def process(uids: list[str], images: list[Image.Image | None]) -> pa.Table:
            ok = [i for i, im in enumerate(images) if im is not None]
            scores = np.full(len(uids), np.nan, dtype=np.float32)
            scores[ok] = scorer.score([images[i] for i in ok], [text_of[uids[i]] or "" for i in ok])
            reasons = [
                R.UNDECODABLE if images[i] is None else (R.NAN_SCORE if not np.isfinite(scores[i]) else "")
                for i in range(len(uids))
            ]
            return pa.table(
                {
                    "uid": uids,
                    "clip_score": pa.array(scores, pa.float32()),
                    "kept": [r == "" for r in reasons],
                    "reason": reasons,
                },
                schema=SCHEMA,
            )

        pairs = list(zip(samples["uid"].to_pylist(), samples["key"].to_pylist(), strict=True))
        settings = {"model": scorer.name, "batch_size": batch_size}
        rows, checkpoint = run_batches(
            lake, graph.stage("clip_scores").home, shard, settings, pairs, batch_size, SCHEMA, process
        )
        table = rows.take(pc.index_in(samples["uid"], value_set=rows["uid"]))
        extra = {"model": scorer.name, "model_seconds": scorer.model_seconds - model_before}
        return Decisions(table, extra=extra, after_publish=checkpoint.clear)

    return run_shard_stage(lake, graph.stage("clip_scores"), shard, decide, columns=["key", "text"])


def scores_model(lake: Lake, shard: str) -> str | None:
    """The model that wrote the shard's published CLIP scores (None when it has none)."""
    rel = graph.stage("clip_scores").report(shard)
    return lake.read_json(rel).get("extra", {}).get("model") if lake.exists(rel) else None


def read_clip_scores(lake: Lake, shard: str, uids: Sequence[str]) -> tuple[pa.Table, str]:
    """The shard's published scores for exactly ``uids`` (in that order) and the model that wrote them.

    Scores of another set of samples are stale (curation changed since they were computed): refused, naming
    the step to re-run, rather than silently scoring part of the pool.
    """
    stage = graph.stage("clip_scores")
    model = scores_model(lake, shard)
    if model is None:
        raise FileNotFoundError(f"{stage.table(shard)} is missing: run clip_scores for shard {shard!r} first")
    table = lake.read_parquet(stage.table(shard))
    if table["uid"].to_pylist() != list(uids):
        raise ValueError(f"the CLIP scores of shard {shard!r} are stale (its samples changed): re-run clip_scores")
    return table, model


@dataclass(frozen=True)
class ClipThreshold:
    """The global threshold that keeps about the top ``top_fraction`` of all scored samples.

    ``exact`` is DataComp's value for the current pool; ``threshold`` is the one in force, which follows
    ``exact`` only when the share it keeps drifts more than ``tolerance`` from ``top_fraction``. Both are None
    when there is nothing to threshold (no top fraction configured, or no shard has scores yet): ``note`` says
    which. ``shards`` holds a digest of each shard's scores, so the next publication can tell which changed;
    ``affected_shards`` are those whose quality decisions this publication may change.

    ``exact`` is found by an exact radix select over per-shard histograms (:mod:`ops.quality.topfraction`), with
    one shard's scores in memory at a time however many shards there are.
    """

    threshold: float | None
    exact: float | None
    top_fraction: float | None
    tolerance: float
    scores: int
    kept_share: float | None
    shards: dict[str, str]
    model: str | None
    affected_shards: list[str]
    note: str = ""


def clip_threshold(
    lake: Lake, shards: Sequence[str], top_fraction: float | None, tolerance: float = 0.0
) -> ClipThreshold:
    """DataComp's top-fraction threshold over the finite scores of ``shards``, published to the lake.

    Sorting makes the exact value independent of shard order and of how samples are spread over shards; ties at
    the threshold are all kept, as in DataComp. Scores from more than one model cannot share a threshold: the
    shards scored by a different model than the majority are named so they can be re-scored.
    """
    if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    stage = graph.stage("clip_scores")
    shards = sorted(set(shards))
    by_model: dict[str | None, list[str]] = {}
    digests = {}
    for shard in shards:
        by_model.setdefault(scores_model(lake, shard), []).append(shard)
        digests[shard] = table_digest(lake.read_parquet(stage.table(shard), columns=["uid", "clip_score", "kept"]))
    scored = {m: group for m, group in by_model.items() if m is not None}
    if len(scored) > 1 or (scored and None in by_model):
        majority = max(scored, key=lambda m: len(scored[m]))
        stale = sorted(s for m, group in by_model.items() if m != majority for s in group)
        raise ValueError(f"CLIP scores from different models cannot share a threshold: re-run clip_scores for {stale}")

    def kept_scores() -> Iterator[tuple[str, np.ndarray]]:
        for shard in shards:
            table = lake.read_parquet(stage.table(shard), columns=["clip_score", "kept"])
            values = table.filter(pc.field("kept"))["clip_score"].to_numpy().astype(np.float32, copy=False)
            yield shard, values[~np.isnan(values)]

    previous = ClipThreshold(**lake.read_json(THRESHOLD_PATH)) if lake.exists(THRESHOLD_PATH) else None
    changed = {s for s in shards if previous is None or previous.shards.get(s) != digests[s]}
    model = next(iter(scored), None)
    n = sum(len(v) for _, v in kept_scores()) if top_fraction is not None else 0
    if top_fraction is None or not n:
        note = "no top-fraction CLIP filter configured" if top_fraction is None else "no CLIP scores yet"
        result = ClipThreshold(None, None, top_fraction, tolerance, n, None, digests, model, sorted(changed), note)
        lake.write_json(THRESHOLD_PATH, asdict(result))
        return result
    exact, n = top_fraction_threshold(lambda: (v for _, v in kept_scores()), top_fraction)
    comparable = (
        previous is not None
        and previous.threshold is not None
        and (previous.model, previous.top_fraction) == (model, top_fraction)
    )
    threshold = exact
    if comparable and abs(_share_at_least(kept_scores(), previous.threshold, n) - top_fraction) <= tolerance:
        threshold = previous.threshold
    if not comparable:
        affected = shards
    else:
        low, high = sorted((previous.threshold, threshold))
        moved = {s for s, v in kept_scores() if low != high and np.any((v >= low) & (v < high))}
        affected = sorted(moved | changed)
    result = ClipThreshold(
        threshold=threshold,
        exact=exact,
        top_fraction=top_fraction,
        tolerance=tolerance,
        scores=n,
        kept_share=round(_share_at_least(kept_scores(), threshold, n), 6),
        shards=digests,
        model=model,
        affected_shards=affected,
    )
    lake.write_json(THRESHOLD_PATH, asdict(result))
    return result


def _share_at_least(parts: Iterator[tuple[str, np.ndarray]], threshold: float, n: int) -> float:
    """The share of the ``n`` scores in ``parts`` at or above ``threshold``, one shard in memory at a time."""
    return sum(int(np.count_nonzero(v >= threshold)) for _, v in parts) / n


def read_clip_threshold(lake: Lake, model: str, top_fraction: float) -> float:
    """The published global threshold; refuses one computed for another model or fraction."""
    if not lake.exists(THRESHOLD_PATH):
        raise FileNotFoundError(f"{THRESHOLD_PATH} is missing: compute clip_score_threshold over all shards first")
    data = ClipThreshold(**lake.read_json(THRESHOLD_PATH))
    if data.threshold is None or data.model != model or data.top_fraction != top_fraction:
        wanted = f"{model} top {top_fraction}"
        raise ValueError(
            f"{THRESHOLD_PATH} is for {data.model} top {data.top_fraction}, not {wanted}: re-run clip_score_threshold"
        )
    return data.threshold
