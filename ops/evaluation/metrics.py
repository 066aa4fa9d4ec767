"""Zero-shot classification and retrieval metrics on embeddings, with CLIP_benchmark's definitions.

Everything here is numpy on plain arrays, so the definitions can be checked by hand on a few vectors. Ranking
is made deterministic: among equal scores the lower index ranks first (as a stable sort by descending score
would order them), so a result never depends on the BLAS, the device or the top-k kernel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LOGIT_SCALE = 100.0
RECALL_KS = (1, 5, 10)


def normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows (L2); a zero row stays zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1.0, norm)


def class_weights(template_embeddings: np.ndarray) -> np.ndarray:
    """Zero-shot classifier from text embeddings shaped (classes, templates, dim).

    Each prompt embedding is normalised, the prompts of a class are averaged, and the mean is normalised
    again: the prompt-ensemble of CLIP and CLIP_benchmark. Returns (classes, dim).
    """
    return normalize(normalize(template_embeddings).mean(axis=1))


def zero_shot_logits(image_embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``100 × image · classifier`` for normalised images, shaped (images, classes)."""
    return LOGIT_SCALE * normalize(image_embeddings) @ weights.T


def best_positive_rank(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Per query row, the 0-based rank of its best-ranked positive column (``-1`` when it has none).

    The rank of column p is the number of columns scored higher plus the number of lower-indexed columns
    scored equal, i.e. its position in a stable descending sort, computed without sorting the row.
    """
    scores = np.asarray(scores, dtype=np.float64)
    masked = np.where(positives, scores, -np.inf)
    best = masked.argmax(axis=1)  # first maximum: the lowest index among tied positives
    best_score = scores[np.arange(len(scores)), best][:, None]
    columns = np.arange(scores.shape[1])[None, :]
    rank = (scores > best_score).sum(axis=1) + ((scores == best_score) & (columns < best[:, None])).sum(axis=1)
    return np.where(positives.any(axis=1), rank, -1)


def per_class_recall(predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Top-1 recall of every class; NaN for a class with no samples (it has no recall to report)."""
    totals = np.bincount(labels, minlength=n_classes).astype(np.float64)
    hits = np.bincount(labels[predictions == labels], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, hits / totals, np.nan)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy and mean per-class recall (balanced accuracy over the classes that have samples).

    ``k`` larger than the number of classes is clipped, as CLIP_benchmark does for sets with < 5 classes.
    """
    labels = np.asarray(labels, dtype=np.int64)
    positives = np.zeros(logits.shape, dtype=bool)
    positives[np.arange(len(labels)), labels] = True
    rank = best_positive_rank(logits, positives)
    out = {f"top{k}": float((rank < min(k, logits.shape[1])).mean()) for k in ks}
    predictions = np.asarray(logits).argmax(axis=1)
    out["mean_per_class_recall"] = float(np.nanmean(per_class_recall(predictions, labels, logits.shape[1])))
    return out


def retrieval_metrics(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, text_image: np.ndarray, ks: tuple[int, ...] = RECALL_KS
) -> dict[str, float]:
    """Recall@k both ways for texts that each describe one image (``text_image[t]`` is its image's index).

    A query is a hit at k when any correct item is among its top k. Image retrieval asks each text for its
    image; text retrieval asks each image for any of its texts (images without a text are left out).
    ``mean_recall@1`` is DataComp's retrieval score: the mean of the two R@1.
    """
    images, texts = normalize(image_embeddings), normalize(text_embeddings)
    text_image = np.asarray(text_image, dtype=np.int64)
    image_rank = _ranks(texts, images, lambda rows: np.arange(len(images))[None, :] == text_image[rows, None])
    text_rank = _ranks(images, texts, lambda rows: text_image[None, :] == rows[:, None])
    text_rank = text_rank[text_rank >= 0]
    out: dict[str, float] = {}
    for k in sorted({1, *ks}):
        out[f"image_retrieval_recall@{k}"] = float((image_rank < k).mean())
        out[f"text_retrieval_recall@{k}"] = float((text_rank < k).mean())
    out["mean_recall@1"] = (out["image_retrieval_recall@1"] + out["text_retrieval_recall@1"]) / 2
    return out


def _ranks(
    queries: np.ndarray, items: np.ndarray, positives_of: Callable[[np.ndarray], np.ndarray], chunk: int = 1024
) -> np.ndarray:
    """Best-positive ranks, a block of queries at a time so memory stays at ``chunk × items`` scores."""
    out = []
    for start in range(0, len(queries), chunk):
        rows = np.arange(start, min(start + chunk, len(queries)))
        out.append(best_positive_rank(queries[rows] @ items.T, positives_of(rows)))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
