"""Homogeneous "product photo" image sets: one object on a plain light background, drawn in numpy.

A very common kind of web image, and the hardest for perceptual near-duplicate search: the background fills most
of the frame, so the low-frequency layout a pHash keeps (and the window pHashes of crop matching) is nearly the
same for thousands of distinct images, and candidate pairs pile up. Every image is a distinct product: one of a
few object families (box, bottle, mug, ball, shoe) with its own proportions, position, size, colours, lighting
and a printed label of random marks, which is the detail that tells two look-alikes apart, as a logo or text
does on a real product.

Images are rendered at any side from their parameters alone, so the same product can be drawn at 384 px for a
JPEG (tests, the dedup benchmark) or at 64 px straight into a detail thumbnail (the scale benchmark's millions of
images). Everything comes from the seed, so one (seed, index) always gives the same pixels.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

FAMILIES = ("box", "bottle", "mug", "ball", "shoe")
_MARKS = 6  # label marks per product
_BATCH = 64  # products whose parameters come from one draw


def _params(seed: int, start: int, n: int) -> dict[str, np.ndarray]:
    """Parameters of products ``start`` to ``start + n``; positions and sizes are fractions of the frame. Drawn
    a whole batch at a time, so product ``k`` of a seed is the same whichever range it is drawn in."""
    first, last = start // _BATCH, (start + n - 1) // _BATCH
    batches = [_batch_params(np.random.default_rng([seed, b])) for b in range(first, last + 1)]
    offset = start - first * _BATCH
    return {k: np.concatenate([b[k] for b in batches])[offset : offset + n] for k in batches[0]}


def _batch_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = _BATCH
    hue = rng.random(n)
    return {
        "family": rng.integers(0, len(FAMILIES), n),
        "cx": 0.5 + rng.uniform(-0.12, 0.12, n),
        "cy": 0.52 + rng.uniform(-0.1, 0.1, n),
        "half_w": rng.uniform(0.16, 0.3, n),
        "half_h": rng.uniform(0.22, 0.36, n),
        "background": rng.uniform(225, 252, (n, 1)) + rng.uniform(-4, 4, (n, 3)),
        "gradient": rng.uniform(-12, 12, n),
        "colour": _hsv_to_rgb(hue, rng.uniform(0.3, 0.9, n), rng.uniform(0.35, 0.95, n)),
        "accent": _hsv_to_rgb((hue + rng.uniform(0.2, 0.8, n)) % 1, rng.uniform(0.2, 0.9, n), rng.uniform(0.2, 1, n)),
        "light": rng.uniform(-0.35, 0.35, n),
        "shape": rng.uniform(-1, 1, (n, 3)),
        "marks": rng.uniform(0, 1, (n, _MARKS, 4)),
        "mark_tone": rng.uniform(0, 1, (n, _MARKS)),
    }


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(n, 3) RGB in 0..255 from hue, saturation and value in 0..1."""
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h[:, None] * 6) % 6
    return 255 * (v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1))


def _cover(distance: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance (negative inside), one pixel of ramp."""
    return np.clip(0.5 - distance / px, 0.0, 1.0)


def _rounded_box(u: np.ndarray, v: np.ndarray, hw: float, hh: float, r: float) -> np.ndarray:
    qx, qy = np.abs(u) - hw + r, np.abs(v) - hh + r
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r


def _ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact for circles, good enough for a ramp)."""
    return (np.hypot(u / a, v / b) - 1) * min(a, b)


def _silhouette(family: int, u: np.ndarray, v: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances, in object units (the object spans about -1..1 both ways), of the body and of its accent
    part (cap, handle, sole, seam...)."""
    a, b, c = shape * 0.12
    if FAMILIES[family] == "box":
        body = _rounded_box(u, v, 0.95 + a, 0.95 + b, 0.05 + abs(c) * 0.3)
        accent = _rounded_box(u, v - 0.7 - b * 0.5, 0.96 + a, 0.08, 0.0)
    elif FAMILIES[family] == "bottle":
        body = np.minimum(
            _rounded_box(u, v - 0.25, 0.55 + a, 0.72 + b, 0.2), _rounded_box(u, v + 0.6, 0.2 + c * 0.5, 0.3, 0.05)
        )
        accent = _rounded_box(u, v + 0.9, 0.24 + c * 0.5, 0.1, 0.03)
    elif FAMILIES[family] == "mug":
        body = _rounded_box(u + 0.2, v, 0.6 + a, 0.8 + b, 0.12)
        ring = np.abs(_ellipse(u - 0.55, v, 0.35 + c * 0.5, 0.42)) - 0.08
        accent = np.maximum(ring, 0.4 - u)
    elif FAMILIES[family] == "ball":
        body = _ellipse(u, v, 0.9 + a, 0.9 + a)
        accent = np.maximum(np.abs(v - 0.4 * u * (1 + b)) - 0.05, body)
    else:
        body = np.minimum(_ellipse(u, v - 0.55, 0.98, 0.3 + b * 0.5), _ellipse(u + 0.35 + a, v - 0.05, 0.55, 0.6))
        accent = _rounded_box(u, v - 0.8, 0.98, 0.07 + abs(c) * 0.2, 0.04)
    return body, accent


def _span(lo: float, hi: float, side: int) -> slice:
    """The pixel rows (or columns) that a shape between ``lo`` and ``hi`` (fractions of the frame) can touch."""
    return slice(max(0, int(lo * side) - 2), min(side, int(hi * side) + 3))


def render(seed: int, start: int, n: int, side: int) -> np.ndarray:
    """Products ``start`` to ``start + n`` of ``seed`` as (n, side, side, 3) uint8 RGB, ``side`` pixels square."""
    if n <= 0:
        return np.zeros((0, side, side, 3), dtype=np.uint8)
    p = _params(seed, start, n)
    grid = ((np.arange(side) + 0.5) / side).astype(np.float32)
    x, y = grid[None, :], grid[:, None]
    out = np.empty((n, side, side, 3), dtype=np.uint8)
    for i in range(n):
        hw, hh = p["half_w"][i], p["half_h"][i]
        u, v = (x - p["cx"][i]) / hw, (y - p["cy"][i]) / hh
        px = 1.0 / (side * min(hw, hh))
        body, accent = _silhouette(int(p["family"][i]), u, v, p["shape"][i])
        image = p["background"][i][None, None, :] + (p["gradient"][i] * (y - 0.5))[..., None]
        shadow = np.clip(1 - np.hypot((u - 0.1) / 1.1, (v - 1.0) / 0.18), 0, 1) ** 1.5
        image = image * (1 - 0.25 * shadow[..., None])
        shade = 1 + p["light"][i] * np.clip(u, -1.2, 1.2) * 0.5 - 0.15 * np.clip(v, 0, 1.2)
        surface = p["colour"][i][None, None, :] * shade[..., None] + np.zeros((side, 1, 1))
        for m in range(_MARKS):
            mx, my, mw, mh = p["marks"][i, m]
            ux, vy, hu, hv = (mx - 0.5) * 0.9, (my - 0.4) * 0.8, 0.05 + mw * 0.25, 0.02 + mh * 0.08
            rows = _span(p["cy"][i] + (vy - hv) * hh, p["cy"][i] + (vy + hv) * hh, side)
            cols = _span(p["cx"][i] + (ux - hu) * hw, p["cx"][i] + (ux + hu) * hw, side)
            mark = _rounded_box(u[:, cols] - ux, v[rows] - vy, hu, hv, 0.01)
            ink = 20.0 if p["mark_tone"][i, m] > 0.5 else 245.0
            inked = _cover(np.maximum(mark, body[rows, cols]), px)[..., None]
            surface[rows, cols] += inked * (ink - surface[rows, cols])
        image = image + _cover(body, px)[..., None] * (surface - image)
        image = image + _cover(accent, px)[..., None] * (p["accent"][i][None, None, :] * shade[..., None] - image)
        out[i] = np.clip(image, 0, 255).astype(np.uint8)
    return out


def images(seed: int, n: int, side: int = 384) -> Iterator[Image.Image]:
    """The first ``n`` products of ``seed`` as RGB images."""
    for start in range(0, n, _BATCH):
        for pixels in render(seed, start, min(_BATCH, n - start), side):
            yield Image.fromarray(pixels)


def jpegs(seed: int, n: int, side: int = 384, quality: int = 90) -> list[bytes]:
    """The first ``n`` products of ``seed`` as JPEG files, as a web shop serves them."""
    blobs = []
    for image in images(seed, n, side):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        blobs.append(out.getvalue())
    return blobs
