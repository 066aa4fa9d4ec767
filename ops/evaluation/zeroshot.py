"""Zero-shot classification of an open_clip model on a classification set, per language."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from infra.lake import Lake
from ops.evaluation.embed import classifier_weights, embed_images
from ops.evaluation.metrics import class_weights, classification_metrics, per_class_recall, zero_shot_logits
from ops.evaluation.sets import ClassificationSet, iter_labelled


def zero_shot(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    preprocess: Callable[[Image.Image], torch.Tensor],
    lake: Lake,
    eval_set: ClassificationSet,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Top-1, top-5 and mean per-class recall for every language of the set, plus per-class recall.

    Images are embedded once; each language only builds its own classifier. Returns ``metrics`` (English, or
    the first language), ``by_language`` (language → metrics) and ``per_class`` (a table: language, class_index,
    classname, n_samples, recall; recall is null for a class with no samples).
    """
    labels: list[int] = []

    def images():
        for image, label in iter_labelled(lake, eval_set):
            labels.append(label)
            yield image

    image_emb = embed_images(model, preprocess, images(), batch_size=batch_size, device=device)
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=eval_set.n_classes)
    by_language: dict[str, dict[str, float]] = {}
    rows: dict[str, list] = {k: [] for k in ("language", "class_index", "classname", "n_samples", "recall")}
    for lang, names in eval_set.classnames.items():
        weights = class_weights(classifier_weights(model, tokenizer, names, eval_set.templates[lang], device))
        logits = zero_shot_logits(image_emb, weights)
        by_language[lang] = classification_metrics(logits, y)
        recall = per_class_recall(logits.argmax(axis=1), y, eval_set.n_classes)
        for i, name in enumerate(names):
            rows["language"].append(lang)
            rows["class_index"].append(i)
            rows["classname"].append(name)
            rows["n_samples"].append(int(counts[i]))
            rows["recall"].append(None if np.isnan(recall[i]) else float(recall[i]))
    return {
        "n_samples": len(y),
        "n_classes": eval_set.n_classes,
        "metrics": by_language[eval_set.primary_language],
        "by_language": by_language,
        "per_class": pa.table(rows),
    }
