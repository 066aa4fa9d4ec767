"""CLIP score: cosine similarity of an open_clip model's normalised image and text embeddings for each pair.

The model comes from an open_clip pretrained tag, a local checkpoint file, or a model logged to MLflow (for
example the CLIP this pipeline trained last time, ``models:/clipfoundry-clip/3``). Scores are model-specific
(DataComp: ViT-B/32 ≥ 0.25 keeps about what ViT-L/14's top 30% keeps), so the raw score of every sample is
stored first, in ``quality/clip/<shard>.parquet``; the filter is then an absolute threshold, or a top fraction
whose threshold :func:`clip_threshold` computes over the scores of ALL shards, exactly as DataComp's
``get_threshold`` does: sort descending, take the value at ``int(n × fraction)``, keep scores ≥ it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from infra.lake import Lake
from ops.layout import report_path, table_path
from ops.quality import reasons as R
from ops.quality.checkpoint import run_batches
from ops.quality.samples import load_samples
from ops.quality.thresholds import top_fraction_threshold
from ops.report import StageReport

STAGE = "quality/clip"
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

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.mlflow_uri is None):
            raise ValueError("a CLIP score needs weights: give exactly one of `pretrained` or `mlflow_uri`")

    @property
    def name(self) -> str:
        return f"{self.model}@{self.mlflow_uri or self.pretrained}"


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


def clip_score_shard(lake: Lake, shard: str, scorer: ClipScorer, upstream: str, batch_size: int = 64) -> StageReport:
    """Score every sample ``upstream`` kept and publish ``quality/clip/<shard>.parquet`` and its report.

    Every entering sample is scored, not only those the heuristics keep, so the scores describe the pool and
    stay valid when the heuristics change. Kept means "has a finite score".
    """
    report = StageReport(stage="clip_score", shard=shard)
    with report.timed():
        samples = load_samples(lake, shard, upstream)
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
        settings = {"model": scorer.name, "upstream": upstream, "batch_size": batch_size}
        rows, checkpoint = run_batches(lake, STAGE, shard, settings, pairs, batch_size, SCHEMA, process)
        table = rows.take(pc.index_in(samples["uid"], value_set=rows["uid"]))
        report.count(table["kept"].to_pylist(), table["reason"].to_pylist())
        report.extra.update(model=scorer.name, upstream=upstream, model_seconds=scorer.model_seconds - model_before)
        lake.write_parquet(table_path(STAGE, shard), table)
    report.check()
    lake.write_json(report_path(STAGE, shard), report.to_dict())
    checkpoint.clear()
    return report


def read_clip_scores(lake: Lake, shard: str, model: str, upstream: str) -> pa.Table | None:
    """The shard's published scores when they came from ``model`` over ``upstream``, else None."""
    if not lake.exists(report_path(STAGE, shard)):
        return None
    extra = lake.read_json(report_path(STAGE, shard)).get("extra", {})
    if extra.get("model") != model or extra.get("upstream") != upstream:
        return None
    return lake.read_parquet(table_path(STAGE, shard))


@dataclass(frozen=True)
class ClipThreshold:
    """The global threshold that keeps the top ``top_fraction`` of all scored samples."""

    threshold: float
    top_fraction: float
    scores: int
    shards: int
    model: str


def clip_threshold(lake: Lake, shards: Sequence[str], top_fraction: float) -> ClipThreshold:
    """DataComp's top-fraction threshold over the finite scores of all ``shards``, written to the lake.

    Sorting makes the value independent of shard order and of how samples are spread over shards; ties at the
    threshold are all kept, as in DataComp.
    """
    if not 0.0 < top_fraction <= 1.0:  # refused before any file is read
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    models = set()
    parts = []
    for shard in sorted(set(shards)):
        models.add(lake.read_json(report_path(STAGE, shard)).get("extra", {}).get("model"))
        scores = lake.read_parquet(table_path(STAGE, shard), columns=["clip_score", "kept"])
        parts.append(scores.filter(pc.field("kept"))["clip_score"].to_numpy())
    if len(models) > 1:
        raise ValueError(f"CLIP scores from different models cannot share a threshold: {sorted(map(str, models))}")
    values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    threshold = top_fraction_threshold(values, top_fraction, "CLIP score")
    result = ClipThreshold(threshold, top_fraction, len(values), len(set(shards)), str(models.pop()))
    lake.write_json(THRESHOLD_PATH, asdict(result))
    return result


def read_clip_threshold(lake: Lake, model: str, top_fraction: float) -> float:
    """The published global threshold; refuses one computed for another model or fraction."""
    if not lake.exists(THRESHOLD_PATH):
        raise FileNotFoundError(f"{THRESHOLD_PATH} is missing: compute clip_threshold over all shards first")
    data = ClipThreshold(**lake.read_json(THRESHOLD_PATH))
    if data.model != model or data.top_fraction != top_fraction:
        wanted = f"{model} top {top_fraction}"
        raise ValueError(f"{THRESHOLD_PATH} is for {data.model} top {data.top_fraction}, not {wanted}")
    return data.threshold
