"""No decoder ever allocates what a header lies about: every format OpenCV or Pillow decodes is sized by the guard
(or refused), the hostile headers the issue names are refused at any claimed size, and OpenCV's own pixel limit is
in force behind the guard."""

from __future__ import annotations

import functools
import io
import struct
import subprocess
import sys
import warnings
import zlib
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ops.decoder_limit import check_decoder_limit
from ops.pixel_limit import TOO_MANY_PIXELS, UNREADABLE_SIZE, PixelLimit
from tests.conftest import REPO
from tests.ops.bombs import HOSTILE
from tests.ops.test_image_size import FakeResizer

W, H = 7, 5  # every sample image: 35 pixels

# Every extension OpenCV (4.14, as installed) decodes, with what its encoder needs. JPEG 2000 is written by Pillow
# (OpenCV's encoder refuses a 7x5 image); EXR decoding is off unless OPENCV_IO_ENABLE_OPENEXR is set.
OPENCV_FORMATS = {
    ".bmp": "u8c3",
    ".jpg": "u8c3",
    ".png": "u8c3",
    ".webp": "u8c3",
    ".avif": "u8c3",
    ".pbm": "u8c1",
    ".pgm": "u8c1",
    ".ppm": "u8c3",
    ".pfm": "f32c3",
    ".pam": "u8c3",
    ".ras": "u8c3",
    ".tiff": "u8c3",
    ".hdr": "f32c3",
    ".gif": "u8c3",
}


def _opencv_encoded(ext: str) -> bytes:
    kind = OPENCV_FORMATS[ext]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    if kind == "u8c1":
        pixels = pixels[:, :, 0]
    if kind == "f32c3":
        pixels = pixels.astype(np.float32) / 255
    ok, buf = cv2.imencode(ext, pixels)
    assert ok, ext
    return buf.tobytes()


@functools.cache
def _pillow_encodings() -> dict[str, bytes]:
    """A 7x5 image in every format this Pillow can write (in the first mode the writer takes)."""
    Image.init()
    out = {}
    for fmt in sorted(Image.SAVE):
        for mode in ("RGB", "L", "1", "P", "RGBA", "I;16", "F"):
            buf = io.BytesIO()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # Pillow's IM writer announces its removal
                    Image.new(mode, (W, H)).save(buf, format=fmt)
            except Exception:  # this writer needs another mode, or writes nothing Pillow reads back
                continue
            data = buf.getvalue()
            try:
                with Image.open(io.BytesIO(data)) as im:
                    if im.size == (W, H):
                        out[fmt] = data
                        break
            except Exception:
                continue
    return out


def _guarded(data: bytes, max_pixels: int) -> tuple[Any, list]:
    resizer = FakeResizer()
    return PixelLimit(resizer, max_pixels)(io.BytesIO(data)), resizer.calls


def _sized_exactly(data: bytes) -> None:
    """The guard reads 35 pixels: it refuses at 34 without calling the decoder, and passes at 35."""
    refused, calls = _guarded(data, W * H - 1)
    assert refused[5] == f"{TOO_MANY_PIXELS}: {W}x{H} > {W * H - 1} pixels" and calls == []
    passed, calls = _guarded(data, W * H)
    assert passed[0] == b"resized" and len(calls) == 1


@pytest.mark.parametrize("ext", sorted(OPENCV_FORMATS))
def test_every_format_opencv_decodes_is_sized_by_the_guard(ext: str) -> None:
    data = _opencv_encoded(ext)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (H, W)
    _sized_exactly(data)


def test_jpeg2000_is_sized_by_the_guard() -> None:
    for fmt in ("JPEG2000",):
        buf = io.BytesIO()
        Image.new("RGB", (W, H)).save(buf, format=fmt)
        _sized_exactly(buf.getvalue())
        _sized_exactly(buf.getvalue()[buf.getvalue().find(b"\xff\x4f\xff\x51") :])  # the bare codestream (J2K)


def test_exr_is_refused_unsized() -> None:
    """OpenCV decodes EXR only when OPENCV_IO_ENABLE_OPENEXR is set; the guard reads no EXR size, so refuses it."""
    exr = b"\x76\x2f\x31\x01" + struct.pack("<I", 2) + b"dataWindow\x00box2i\x00" + struct.pack("<I", 16)
    exr += struct.pack("<iiii", 0, 0, 59_999, 59_999) + b"\x00" * 64
    result, calls = _guarded(exr, 10**12)
    assert result[5] == UNREADABLE_SIZE and calls == []


@pytest.mark.parametrize("fmt", sorted(_pillow_encodings()))
def test_every_format_pillow_writes_is_sized_or_refused(fmt: str) -> None:
    """Whatever Pillow can write, the guard either reads its 35 pixels or refuses it unread: it never hands the
    decoder an image whose size it does not know."""
    data = _pillow_encodings()[fmt]
    refused, calls = _guarded(data, W * H - 1)
    assert calls == [] and refused[0] is None
    assert refused[5] in (f"{TOO_MANY_PIXELS}: {W}x{H} > {W * H - 1} pixels", UNREADABLE_SIZE)


# --- the hostile headers of the issue, at any claimed size ------------------------------------------------------


LIMIT = 50_000_000


@settings(max_examples=200, derandomize=True, deadline=None)
@given(kind=st.sampled_from(sorted(HOSTILE)), width=st.integers(1, 65_535), height=st.integers(1, 65_535))
def test_hostile_headers_are_refused_iff_they_claim_too_much(kind: str, width: int, height: int) -> None:
    data = HOSTILE[kind](width, height)
    assert len(data) < 1500
    result, calls = _guarded(data, LIMIT)
    if width * height > LIMIT:
        assert calls == [] and result[5].startswith(TOO_MANY_PIXELS), (kind, width, height, result)
    else:
        assert len(calls) == 1


def test_opencv_itself_would_decode_the_hostile_headers() -> None:
    """The headers above are what OpenCV accepts: small, with their pixels after them, they decode at their
    claimed size."""
    for kind, make in HOSTILE.items():
        image = cv2.imdecode(np.frombuffer(make(3, 2) + bytes(128), np.uint8), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape[:2] == (2, 3), kind


_BACKSTOP = """
import os, sys
sys.path.insert(0, {repo!r})
os.environ.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)
{before}
from ops.decoder_limit import set_default, check_decoder_limit
set_default(89_478_485)
import cv2, numpy as np
from tests.ops.bombs import HOSTILE
print("limit", check_decoder_limit())
for kind, make in sorted(HOSTILE.items()):
    try:
        image = cv2.imdecode(np.frombuffer(make(60_000, 60_000), np.uint8), cv2.IMREAD_UNCHANGED)
        print(kind, "decoded" if image is not None else "none")
    except cv2.error as exc:
        print(kind, "refused" if "CV_IO_MAX_IMAGE_PIXELS" in str(exc) else "error")
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # this process, since exec
print("peak_mib", int(peak.split()[1]) // 1024)
"""


def _backstop(before: str) -> subprocess.CompletedProcess:
    script = _BACKSTOP.format(repo=str(REPO), before=before)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)


def test_opencv_refuses_hostile_headers_on_its_own_behind_the_guard() -> None:
    """With the variable set before OpenCV loads (as the download does), OpenCV refuses every hostile header of
    3.6 gigapixels before allocating anything."""
    done = _backstop("")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert lines.pop("limit") == "89478485"
    assert int(lines.pop("peak_mib")) < 1024
    assert lines == {kind: "refused" for kind in HOSTILE}


def test_a_decoder_loaded_before_its_limit_fails_the_download_loudly() -> None:
    done = _backstop("import cv2")
    assert done.returncode != 0
    assert "OpenCV does not enforce OPENCV_IO_MAX_IMAGE_PIXELS" in done.stderr


def test_the_limit_is_in_force_in_the_test_process() -> None:
    assert check_decoder_limit() == 89_478_485


def _png_with_chunk(kind: bytes, declared: int, carried: int) -> bytes:
    """A valid 7x5 PNG with one chunk inserted after IHDR that declares ``declared`` bytes and carries ``carried``."""
    png = _opencv_encoded(".png")
    ihdr_end = 8 + 12 + 13
    return png[:ihdr_end] + struct.pack(">I", declared) + kind + bytes(carried) + png[ihdr_end:]


@settings(max_examples=150, derandomize=True, deadline=None)
@given(
    kind=st.sampled_from([b"IDAT", b"tEXt", b"iCCP", b"fdAT", b"zzZz", b"eXIf"]),
    excess=st.integers(1, (1 << 32) - 1),
    carried=st.integers(0, 64),
)
def test_a_chunk_declaring_more_than_the_file_holds_is_refused(kind: bytes, excess: int, carried: int) -> None:
    """OpenCV's PNG reader allocates each chunk's declared length first (a 44-byte file cost it 4 GiB, found by the
    image_guard fuzz target): any chunk running past the end of the data is refused unread."""
    data = _png_with_chunk(kind, min(len(_opencv_encoded(".png")) + carried + excess, (1 << 32) - 1), carried)
    result, calls = _guarded(data, 10**9)
    assert calls == [] and result[5].startswith(f"{TOO_MANY_PIXELS}: a PNG {kind.decode()!r} chunk declares")


def test_chunks_that_fit_pass() -> None:
    _sized_exactly(_opencv_encoded(".png"))
    text = b"Comment\x00fine"
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    png = _opencv_encoded(".png")
    _sized_exactly(png[:33] + chunk + png[33:])
