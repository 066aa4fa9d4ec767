"""The decompression-bomb guard in front of img2dataset's decoder: an image is decoded only when its header's size is
known and within the limit.

OpenCV, which img2dataset decodes with, allocates the whole pixel array a header claims before reading a pixel.
:func:`image_size` reads the claimed size of nearly every format OpenCV decodes itself
(:func:`ops.image_size.header_size`) and asks Pillow's lazy open about the rest (TIFF, JPEG 2000, AVIF);
:class:`PixelLimit` refuses what claims too much, what neither could size, and what declares more data than it
holds (:func:`ops.image_size.overrun`), before the decoder sees it.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from ops.image_size import header_size, overrun

TOO_MANY_PIXELS = "decompression bomb"
UNREADABLE_SIZE = "not an image: no size can be read from its header"


def image_size(data: bytes, stream: io.BytesIO) -> tuple[int, int] | None:
    """The size an image's header claims: read by header_size for most formats, else by Pillow's lazy open; None when
    neither can read one. Raises ``Image.DecompressionBombError`` when Pillow itself refuses the claimed size."""
    size = header_size(data)
    if size is not None:
        return size
    try:
        with Image.open(stream) as img:
            return img.size
    except Image.DecompressionBombError:
        raise
    except Exception:  # not an image Pillow knows, or a header it cannot read
        return None
    finally:
        stream.seek(0)


class PixelLimit:
    """Wraps img2dataset's resizer: images whose header claims more than ``max_pixels``, or whose size cannot be
    read at all, are refused unread."""

    def __init__(self, resizer: Any, max_pixels: int) -> None:
        self.resizer = resizer
        self.max_pixels = max_pixels

    def __call__(self, img_stream: Any, blurring_bbox_list: Any = None) -> Any:
        # img2dataset hands over a BytesIO made from the response's bytes: getvalue() returns them without a copy.
        if not isinstance(img_stream, io.BytesIO):
            img_stream = io.BytesIO(img_stream.read())
        try:
            size = image_size(img_stream.getvalue(), img_stream)
        except Image.DecompressionBombError as exc:  # Pillow refuses the claimed size itself (TIFF, ICO, ...)
            return None, None, None, None, None, f"{TOO_MANY_PIXELS}: {exc}"
        if size is None:
            return None, None, None, None, None, UNREADABLE_SIZE
        width, height = size
        if width * height > self.max_pixels:
            return None, None, None, width, height, f"{TOO_MANY_PIXELS}: {width}x{height} > {self.max_pixels} pixels"
        too_long = overrun(img_stream.getvalue())
        if too_long:
            return None, None, None, width, height, f"{TOO_MANY_PIXELS}: {too_long}"
        return self.resizer(img_stream, blurring_bbox_list)
