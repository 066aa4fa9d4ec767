"""Procedural images of the sample web's concepts, and the near-duplicate transforms applied to them.

An image is one coloured shape on a textured neutral background, with variation a small CLIP must learn to
ignore: size, position, rotation, colour jitter, a background gradient and blotches, fine noise, and sometimes a
small distractor shape of another concept. Everything is drawn from a numpy ``Generator`` owned by the caller,
so one (seed, image id) pair always gives the same pixels and, through Pillow's encoders, the same bytes.

The hard web adds a second style, ``product``: a catalogue shot, the object near the centre on a nearly flat white
or beige background, its colour washed out towards grey and jittered more, printed with broad bands of a lighter
and a darker shade, no distractor. Product shots of different concepts look alike (red, orange, pink and brown
overlap; shapes differ only in outline), which is what makes a mismatched caption hard to tell from a right one;
the print makes two products of one concept different images, not near duplicates.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from infra.sample_web.concepts import BACKGROUNDS, COLOURS, CONCEPTS, concept_parts

_SUPERSAMPLE = 2
_GRAIN = 1024
NEAR_DUP_TRANSFORMS: tuple[str, ...] = ("resize", "jpeg", "crop", "colour")
STYLES: tuple[str, ...] = ("varied", "product")
_PRODUCT_BACKGROUNDS = ("white", "beige")
_PRODUCT_WASH = 0.35  # share of grey mixed into a product's colour
_PRODUCT_JITTER = 30


@dataclass(frozen=True)
class Shape:
    concept: str
    cx: float
    cy: float
    radius: float
    angle: float
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    background: str
    main: Shape
    distractor: Shape | None
    texture_seed: int
    style: str = "varied"

    @property
    def size_word(self) -> str:
        rel = self.main.radius / min(self.width, self.height)
        return "small" if rel < 0.26 else "large" if rel > 0.34 else ""

    @property
    def position(self) -> str:
        fx, fy = self.main.cx / self.width, self.main.cy / self.height
        vertical = "top" if fy < 0.4 else "bottom" if fy > 0.6 else ""
        horizontal = "left" if fx < 0.4 else "right" if fx > 0.6 else ""
        return f"{vertical} {horizontal}".strip() or "middle"


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in rgb)


def sample_scene(
    rng: np.random.Generator, concept: str, width: int, height: int, *, distractor_p: float = 0.3, style: str = "varied"
) -> Scene:
    if style == "product":
        return _product_scene(rng, concept, width, height)
    if style != "varied":
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    short = min(width, height)
    radius = float(rng.uniform(0.22, 0.38) * short)
    margin = radius + 0.03 * short
    cx = float(rng.uniform(margin, width - margin))
    cy = float(rng.uniform(margin, height - margin))
    colour, _ = concept_parts(concept)
    main = Shape(concept, cx, cy, radius, float(rng.uniform(0, 2 * math.pi)), _jitter(rng, COLOURS[colour], 18))
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    distractor = None
    if rng.random() < distractor_p:
        others = [c for c in CONCEPTS if c != concept]
        other = others[int(rng.integers(len(others)))]
        r2 = radius * float(rng.uniform(0.22, 0.32))
        for _ in range(8):
            x2 = float(rng.uniform(r2 + 2, width - r2 - 2))
            y2 = float(rng.uniform(r2 + 2, height - r2 - 2))
            if math.hypot(x2 - cx, y2 - cy) > radius + r2 + 4:
                c2, _ = concept_parts(other)
                distractor = Shape(other, x2, y2, r2, float(rng.uniform(0, 2 * math.pi)), COLOURS[c2])
                break
    return Scene(width, height, background, main, distractor, int(rng.integers(2**31)))


def _product_scene(rng: np.random.Generator, concept: str, width: int, height: int) -> Scene:
    short = min(width, height)
    radius = float(rng.uniform(0.24, 0.36) * short)
    cx = width / 2 + float(rng.uniform(-0.08, 0.08)) * width
    cy = height / 2 + float(rng.uniform(-0.08, 0.08)) * height
    colour, _ = concept_parts(concept)
    washed = tuple(round((1 - _PRODUCT_WASH) * v + _PRODUCT_WASH * 128) for v in COLOURS[colour])
    main = Shape(concept, cx, cy, radius, float(rng.uniform(0, 2 * math.pi)), _jitter(rng, washed, _PRODUCT_JITTER))
    background = _PRODUCT_BACKGROUNDS[int(rng.integers(len(_PRODUCT_BACKGROUNDS)))]
    return Scene(width, height, background, main, None, int(rng.integers(2**31)), style="product")


def _print_fill(shape: Shape, size: tuple[int, int], seed: int) -> Image.Image:
    """The object's own print: broad bands of a lighter and a darker shade at a random angle and width, so two
    products of one concept differ as two shirts of one colour do (and a perceptual hash tells them apart)."""
    rng = np.random.default_rng(seed)
    w, h = size
    theta = rng.uniform(0, math.pi)
    period = shape.radius * rng.uniform(0.5, 1.4)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = (xs * math.cos(theta) + ys * math.sin(theta)) * (2 * math.pi / period) + rng.uniform(0, 2 * math.pi)
    shade = np.float32(rng.uniform(22, 40)) * np.sign(np.sin(phase))[..., None]
    return Image.fromarray(np.clip(np.array(shape.rgb, np.float32) + shade, 0, 255).astype(np.uint8), mode="RGB")


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in (math.pi / 4 + k * math.pi / 2 for k in range(4))]
    elif shape == "triangle":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
    elif shape == "star":
        pts = [
            ((r if k % 2 == 0 else 0.45 * r) * math.cos(a), (r if k % 2 == 0 else 0.45 * r) * math.sin(a))
            for k, a in enumerate(-math.pi / 2 + k * math.pi / 5 for k in range(10))
        ]
    elif shape == "cross":
        w = 0.33 * r
        pts = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r)]
        pts += [(-x, -y) for x, y in pts]
    else:
        raise ValueError(shape)
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in pts]


def _shape_mask(shape: Shape) -> tuple[Image.Image, tuple[int, int]]:
    """An anti-aliased mask of the shape's bounding box (drawn at 2x, box-filtered down) and its offset."""
    _, kind = concept_parts(shape.concept)
    extent = 1.1 * shape.radius  # a cross's arm corners lie just outside its radius
    x0, y0 = math.floor(shape.cx - extent) - 1, math.floor(shape.cy - extent) - 1
    side = math.ceil(2 * extent) + 3
    s = _SUPERSAMPLE
    cx, cy, r = (shape.cx - x0) * s, (shape.cy - y0) * s, shape.radius * s
    mask = Image.new("L", (side * s, side * s), 0)
    draw = ImageDraw.Draw(mask)
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        inner = 0.62 * r
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, shape.angle), fill=255)
    return mask.resize((side, side), Image.Resampling.BOX), (x0, y0)


@functools.cache
def _grain() -> np.ndarray:
    """Fine noise shared by all images; each takes a crop at its own offset, which is much cheaper than fresh noise."""
    return np.random.default_rng(7).standard_normal(size=(_GRAIN, _GRAIN), dtype=np.float32) * 2.5


@functools.cache
def _tint(background: str) -> np.ndarray:
    """Per-channel (3, 256) lookup tables adding a background colour to a grey offset image centred on 128."""
    offsets = np.arange(256, dtype=np.int16)[None, :] - 128
    rgb = np.array(BACKGROUNDS[background], dtype=np.int16)[:, None]
    return np.clip(offsets + rgb, 0, 255).astype(np.uint8)


def _background(scene: Scene) -> Image.Image:
    rng = np.random.default_rng(scene.texture_seed)
    h, w = scene.height, scene.width
    theta = rng.uniform(0, 2 * math.pi)
    flat = 0.2 if scene.style == "product" else 1.0  # a catalogue backdrop: barely shaded, no blotches
    strength = flat * rng.uniform(10, 30) / max(h, w)
    xs = (np.arange(w, dtype=np.float32) - w / 2) * (math.cos(theta) * strength)
    ys = (np.arange(h, dtype=np.float32) - h / 2) * (math.sin(theta) * strength)
    blotch = flat * rng.uniform(3, 8)
    coarse = rng.normal(0, blotch, size=(max(2, h // 24), max(2, w // 24))).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    gy, gx = int(rng.integers(_GRAIN - min(h, _GRAIN) + 1)), int(rng.integers(_GRAIN - min(w, _GRAIN) + 1))
    grain = _grain()[gy : gy + h, gx : gx + w]
    if grain.shape != (h, w):
        grain = np.resize(grain, (h, w))
    offset = np.clip(field + xs[None, :] + ys[:, None] + grain + 128, 0, 255).astype(np.uint8)
    lut = _tint(scene.background)
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):
        np.take(lut[c], offset, out=rgb[..., c])
    return Image.fromarray(rgb, mode="RGB")


def render(scene: Scene) -> Image.Image:
    img = _background(scene)
    for shape in (scene.main, scene.distractor):
        if shape is not None:
            mask, offset = _shape_mask(shape)
            plain = scene.style != "product" or shape is not scene.main
            fill = (
                Image.new("RGB", mask.size, shape.rgb) if plain else _print_fill(shape, mask.size, scene.texture_seed)
            )
            img.paste(fill, offset, mask)
    return img


def encode(img: Image.Image, fmt: str, *, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    elif fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def near_duplicate(rng: np.random.Generator, img: Image.Image, transform: str) -> Image.Image:
    """A copy a perceptual hash should still match: slightly resized, cropped or colour-shifted.

    ``jpeg`` returns the image unchanged; the caller re-encodes it at low quality. Crops stay within 2% a side:
    on pictures this simple, a 3-7% crop moved a 64-bit pHash by up to 32 bits, as far as unrelated images.
    """
    w, h = img.size
    if transform == "resize":
        f = float(rng.uniform(0.9, 1.25))
        return img.resize((round(w * f), round(h * f)), Image.Resampling.BICUBIC)
    if transform == "crop":
        left, top, right, bottom = (max(1, int(rng.uniform(0.005, 0.02) * d)) for d in (w, h, w, h))
        return img.crop((left, top, w - right, h - bottom))
    if transform == "colour":
        img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.9, 1.1)))
        return ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.9, 1.1)))
    if transform == "jpeg":
        return img
    raise ValueError(f"unknown near-duplicate transform {transform!r}")
