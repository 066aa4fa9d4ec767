"""Image embeddings for semantic dedup, from an open_clip model built by name (and checkpoint, when given).

The model is built through ``open_clip.create_model_and_transforms``, the same call production uses with a
pretrained tag or a local checkpoint; tests pass a tiny registered config with no checkpoint. Embeddings are
L2-normalised float32, so a dot product is the cosine similarity the index thresholds.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image


@lru_cache(maxsize=2)
def _load(model_name: str, pretrained: str | None) -> tuple[torch.nn.Module, object]:
    import open_clip  # heavy import: only when semantic dedup is configured

    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    model.eval()
    return model, preprocess


def embed_images(images: list[Image.Image], model_name: str, pretrained: str | None, batch_size: int) -> np.ndarray:
    """Unit-norm image embeddings, one row per image, shape (n, dim)."""
    model, preprocess = _load(model_name, pretrained)
    rows: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.stack([preprocess(im.convert("RGB")) for im in images[start : start + batch_size]])
            features = model.encode_image(batch).float()
            rows.append(torch.nn.functional.normalize(features, dim=-1).numpy())
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(rows).astype(np.float32)
