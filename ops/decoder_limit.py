"""OpenCV's own pixel limit, the decompression-bomb guard behind the download's header guard.

OpenCV allocates the whole pixel array a header claims before it reads any pixel, and refuses only what exceeds
``OPENCV_IO_MAX_IMAGE_PIXELS`` (2^30 by default: a gigapixel). It reads that variable once, when it loads, so it
must be in the environment before the first ``import cv2`` of the process (the download sets it before importing
img2dataset; a deployment can set it for the whole process). With it in force, an image whose header the guard
read differently from OpenCV (:mod:`ops.download_guard`) still cannot make OpenCV allocate more than the limit.
"""

from __future__ import annotations

import math
import os

VARIABLE = "OPENCV_IO_MAX_IMAGE_PIXELS"


def set_default(limit: int) -> None:
    """Ask for ``limit`` unless the environment already names one; effective only before OpenCV loads."""
    os.environ.setdefault(VARIABLE, str(limit))


def check_decoder_limit() -> int:
    """The pixel limit OpenCV enforces on its own in this process; raises unless one is in force.

    Proved by decoding a header-only bitmap one pixel over the limit: refused before any allocation when the limit
    holds; without it, OpenCV reserves the array (untouched) and fails on the missing data. An image the header
    guard passed and OpenCV refuses is recorded as a decompression bomb, so raise both limits together.
    """
    import cv2  # loaded here, after the caller had its chance to set the variable
    import numpy as np

    value = os.environ.get(VARIABLE, "")
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"{VARIABLE} must be a positive pixel count, set before OpenCV is imported")
    limit = int(value)
    side = math.isqrt(limit) + 1
    probe = np.frombuffer(b"P4\n%d %d\n" % (side, side), np.uint8)
    try:
        cv2.imdecode(probe, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            return limit
    raise RuntimeError(
        f"OpenCV does not enforce {VARIABLE}={limit}: it was imported before the variable was set; "
        "set it in the environment the process starts with"
    )
