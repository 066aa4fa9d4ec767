"""Image-text retrieval of an open_clip model on a webdataset whose samples carry several captions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from collections.abc import Callable

import numpy as np
from PIL import Image

from infra.lake import Lake
from ops.evaluation.embed import embed_images, embed_texts
from ops.evaluation.metrics import retrieval_metrics
from ops.evaluation.sets import iter_captioned


def retrieval(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    preprocess: Callable[[Image.Image], torch.Tensor],
    lake: Lake,
    prefix: str,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> dict[str, float]:
    """R@1/5/10 for image retrieval (text → image) and text retrieval (image → text), and their mean R@1."""
    texts: list[str] = []
    text_image: list[int] = []

    def images():
        for i, (image, captions) in enumerate(iter_captioned(lake, prefix)):
            texts.extend(captions)
            text_image.extend([i] * len(captions))
            yield image

    image_emb = embed_images(model, preprocess, images(), batch_size=batch_size, device=device)
    text_emb = embed_texts(model, tokenizer, texts, device=device)
    out = retrieval_metrics(image_emb, text_emb, np.asarray(text_image))
    out.update(n_images=float(len(image_emb)), n_texts=float(len(texts)))
    return out
