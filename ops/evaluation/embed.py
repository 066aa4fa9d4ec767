"""Batched embedding of images and texts with any open_clip model (the only place evaluation touches torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
from PIL import Image


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def embed_images(
    model: torch.nn.Module,
    preprocess: Callable[[Image.Image], torch.Tensor],
    images: Iterable[Image.Image],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Image embeddings (rows, float32, not normalised), reading ``images`` lazily one batch at a time."""
    model.eval()
    out = []
    import torch

    with torch.inference_mode():
        for batch in _batches(images, batch_size):
            pixels = torch.stack([preprocess(im) for im in batch]).to(device)
            out.append(model.encode_image(pixels).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def embed_texts(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    texts: Sequence[str],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Text embeddings (rows, float32, not normalised)."""
    model.eval()
    out = []
    import torch

    with torch.inference_mode():
        for batch in _batches(texts, batch_size):
            out.append(model.encode_text(tokenizer(batch).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def fill_template(template: str, classname: str) -> str:
    """Templates name the class as ``{c}`` (CLIP_benchmark) or ``{}`` (open_clip, the sample web)."""
    return template.replace("{c}", classname) if "{c}" in template else template.replace("{}", classname)


def classifier_weights(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Text embeddings of every (class, template) prompt, shaped (classes, templates, dim)."""
    prompts = [fill_template(t, c) for c in classnames for t in templates]
    return embed_texts(model, tokenizer, prompts, device=device).reshape(len(classnames), len(templates), -1)
