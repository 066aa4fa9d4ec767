"""Pixels for a set of samples, streamed from the shard's webdataset tar in one pass.

The tar is read once, front to back, and only the wanted members are decoded, so a stage never holds the whole
tar in memory and stops reading as soon as it has every image it wants. A sample whose image is missing or
cannot be decoded comes out as ``None`` so the caller records it as ``undecodable`` instead of losing it; a tar
that is damaged, or does not hold the samples the download ledger kept, fails the step instead.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import TypeVar

from PIL import Image

from infra.lake import Lake
from ops.download import iter_tar_samples

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp"})
T = TypeVar("T")


def decode(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image.convert("RGB")
    except Exception:  # any undecodable payload is a per-sample outcome, not a failure of the shard
        return None


def iter_images(lake: Lake, shard: str, wanted: Mapping[str, str]) -> Iterator[tuple[str, Image.Image | None]]:
    """``(uid, image)`` for ``wanted`` (tar key → uid) in tar order, then ``(uid, None)`` for keys whose sample
    holds no image. A damaged tar raises (:func:`ops.download.iter_tar_samples`) rather than passing for absence."""
    found: set[str] = set()
    if wanted:
        for key, files in iter_tar_samples(lake, shard):
            image = next((files[ext] for ext in IMAGE_EXTENSIONS if ext in files), None)
            if image is None or key not in wanted or key in found:
                continue
            found.add(key)
            yield wanted[key], decode(image)
            if len(found) == len(wanted):
                break
    for key, uid in wanted.items():
        if key not in found:
            yield uid, None


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    if size < 1:
        raise ValueError(f"batch size must be positive, got {size}")
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
