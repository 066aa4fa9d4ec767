"""Decode an image once and derive all of its dedup fingerprints from that one decode.

* The canonical pixel digest: SHA-256 over the decoded pixels in a canonical mode (RGB, or RGBA when some pixel
  is not fully opaque) and the size. Two files that decode to the same pixels get the same digest whatever
  their encoding, so a PNG re-encode of a JPEG's pixels is an exact duplicate, while the file bytes would differ.
* The 64-bit perceptual hash: exactly ``imagehash.phash`` (greyscale, Lanczos to 32x32, 2-D DCT-II, the 8x8
  low-frequency block against its median), computed for a whole batch at once. The greyscale conversion and
  resize are Pillow's own calls, so the integers match imagehash bit for bit; the batch only removes the
  per-image Python overhead around them. Bit ``i`` of the integer (from the most significant) is element ``i``
  of imagehash's row-major 8x8 array, so ``int(str(imagehash.phash(im)), 16)`` is the same number.
* The contrast of that thumbnail (standard deviation of its grey levels). A featureless image has no
  low-frequency structure, so its pHash is a constant pattern shared by every flat image of any colour; the
  index does not link images by pHash below a minimum contrast (their exact copies are still found).
* A 64x64 greyscale *detail* thumbnail from the same greyscale conversion, from which :mod:`ops.dedup.crops`
  derives the pHashes of sub-windows and against which it verifies a crop (see there).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import NamedTuple

import numpy as np
import scipy.fftpack
from PIL import Image

HASH_SIZE = 8
_SIDE = HASH_SIZE * 4
DETAIL_SIDE = 64


class UndecodableImage(ValueError):
    """The bytes are not an image Pillow can fully decode (corrupt, truncated, unknown format, a pixel bomb)."""


def decode(data: bytes) -> Image.Image:
    """Fully decode ``data``; every way an image can fail becomes :class:`UndecodableImage`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, bomb errors, ...)
        raise UndecodableImage(f"{type(exc).__name__}: {exc}") from exc
    return image


def pixel_sha256(image: Image.Image) -> str:
    """SHA-256 of the canonical pixels; alpha only counts when it is not fully opaque everywhere."""
    if image.mode == "RGB":
        mode, canonical = "RGB", image
    elif image.has_transparency_data:
        canonical = image.convert("RGBA")
        mode = "RGBA" if canonical.getextrema()[3][0] < 255 else "RGB"
        canonical = canonical if mode == "RGBA" else canonical.convert("RGB")
    else:
        mode, canonical = "RGB", image.convert("RGB")
    digest = hashlib.sha256(f"{mode}:{image.width}x{image.height}:".encode())
    digest.update(canonical.tobytes())
    return digest.hexdigest()


def phash_pixels(image: Image.Image) -> np.ndarray:
    """The 32x32 greyscale thumbnail imagehash.phash takes its DCT of (same Pillow calls, same order)."""
    return np.asarray(image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS))


def thumbnails(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The pHash thumbnail and the 64x64 detail thumbnail, from one greyscale conversion. The detail thumbnail
    is squashed to a square like the pHash one but with Pillow's (antialiased) bilinear filter, which costs half
    of a Lanczos pass over the full image and measured the same for crop matching (window hashes and checks)."""
    grey = image.convert("L")
    return (
        np.asarray(grey.resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)),
        np.asarray(grey.resize((DETAIL_SIDE, DETAIL_SIDE), Image.Resampling.BILINEAR)),
    )


def phash_from_pixels(thumbs: np.ndarray) -> np.ndarray:
    """pHash integers (uint64) of a stack of 32x32 thumbnails, shape (n, 32, 32)."""
    if len(thumbs) == 0:
        return np.zeros(0, dtype=np.uint64)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(thumbs, axis=1), axis=2)
    return hash_bits(dct[:, :HASH_SIZE, :HASH_SIZE].reshape(len(thumbs), HASH_SIZE * HASH_SIZE))


def hash_bits(low: np.ndarray) -> np.ndarray:
    """uint64 hashes from rows of 64 low-frequency DCT coefficients (row-major 8x8): bit set above the median."""
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def contrast(thumbs: np.ndarray) -> np.ndarray:
    """Grey-level standard deviation of each 32x32 thumbnail (float32), shape (n,)."""
    if len(thumbs) == 0:
        return np.zeros(0, dtype=np.float32)
    return thumbs.reshape(len(thumbs), -1).std(axis=1).astype(np.float32)


def phash_many(images: list[Image.Image]) -> np.ndarray:
    """pHash integers of decoded images, equal to ``imagehash.phash`` on each."""
    if not images:
        return np.zeros(0, dtype=np.uint64)
    return phash_from_pixels(np.stack([phash_pixels(im) for im in images]))


class Fingerprint(NamedTuple):
    image: Image.Image
    pixel_sha256: str
    thumb: np.ndarray  # 32x32 uint8: hash a batch with phash_from_pixels
    detail: np.ndarray  # 64x64 uint8: window hashes and crop alignment (ops.dedup.crops)


def fingerprint(data: bytes) -> Fingerprint:
    """Decode once; return the image, its pixel digest, its pHash thumbnail and its detail thumbnail. Any
    failure, including a header that decodes into pixels Pillow cannot convert, is :class:`UndecodableImage`."""
    image = decode(data)
    try:
        return Fingerprint(image, pixel_sha256(image), *thumbnails(image))
    except Exception as exc:
        raise UndecodableImage(f"{type(exc).__name__}: {exc}") from exc
