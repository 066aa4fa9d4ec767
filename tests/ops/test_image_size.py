"""header_size agrees with Pillow on real encodings, survives cut and damaged data, and lets PixelLimit refuse bombs."""

from __future__ import annotations

import io
import random
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from ops.image_size import header_size
from ops.pixel_limit import TOO_MANY_PIXELS, UNREADABLE_SIZE, PixelLimit

SIZES = [(1, 1), (3, 5), (17, 1), (1, 23), (641, 479), (1000, 7)]


def _image(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Noise, so that encoders cannot collapse the picture into something trivial."""
    rng = random.Random(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    depth = 2 if mode == "I;16" else 1
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * bands * depth))


def _encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def _pillow_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "camera maker"
    exif[0x0112] = 6  # rotated: Pillow's size stays the stored one
    exif[0x0131] = "x" * 3000
    return exif


def _frames(mode: str, size: tuple[int, int]) -> list[Image.Image]:
    """Frames that differ only in a corner, so GIF and WebP writers store later frames as small offset rectangles."""
    first = _image(mode, size)
    frames = [first]
    for seed in (1, 2):
        frame = first.copy()
        corner = (max(1, size[0] // 3), max(1, size[1] // 3))
        frame.paste(_image(mode, corner, seed), (size[0] - corner[0], size[1] - corner[1]))
        frames.append(frame)
    return frames


def _jpeg_cases() -> list[tuple[str, bytes]]:
    cases = []
    for size in [*SIZES, (65500, 2), (2, 65500)]:  # libjpeg writes at most 65500
        cases.append((f"baseline {size}", _encode(_image("RGB", size), "JPEG")))
    for size in SIZES:
        rgb = _image("RGB", size)
        cases += [
            (f"progressive {size}", _encode(rgb, "JPEG", progressive=True)),
            (f"grey {size}", _encode(_image("L", size), "JPEG", quality=50)),
            (f"cmyk {size}", _encode(_image("CMYK", size), "JPEG")),
            (f"4:4:4 restarts {size}", _encode(rgb, "JPEG", subsampling=0, restart_marker_rows=1)),
            (
                f"exif icc comment xmp {size}",
                _encode(
                    rgb,
                    "JPEG",
                    exif=_exif(),
                    icc_profile=bytes(range(256)) * 600,  # > 64 kB: split over several APP2 segments
                    comment=b"a comment",
                    xmp=b"<x:xmpmeta/>",
                    progressive=True,
                ),
            ),
        ]
    return cases


def _png_cases() -> list[tuple[str, bytes]]:
    cases = []
    for size in [*SIZES, (65535, 1), (1, 65535)]:
        cases.append((f"rgb {size}", _encode(_image("RGB", size), "PNG")))
    for size in SIZES:
        cases += [
            (f"rgba {size}", _encode(_image("RGBA", size), "PNG")),
            (f"palette {size}", _encode(_image("RGB", size).convert("P"), "PNG")),
            (f"16-bit grey {size}", _encode(_image("I;16", size), "PNG")),
            (f"1-bit {size}", _encode(_image("1", size), "PNG")),
            (
                f"animated {size}",
                _encode(_image("RGB", size), "PNG", save_all=True, append_images=_frames("RGB", size)),
            ),
        ]
    return cases


def _gif_cases() -> list[tuple[str, bytes]]:
    cases = []
    for size in [*SIZES, (65535, 1)]:
        cases.append((f"static {size}", _encode(_image("L", size), "GIF")))
    for size in SIZES:
        frames = _frames("P", size)
        cases += [
            (f"animated {size}", _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0)),
            (f"commented {size}", _encode(_image("RGB", size), "GIF", comment=b"c" * 700, transparency=0)),
        ]
    return cases


def _webp_cases() -> list[tuple[str, bytes]]:
    cases = []
    for size in [*SIZES, (16383, 2), (2, 16383)]:
        cases += [
            (f"lossy {size}", _encode(_image("RGB", size), "WEBP", quality=60)),
            (f"lossless {size}", _encode(_image("RGB", size), "WEBP", lossless=True)),
        ]
    for size in SIZES:
        rgba = _frames("RGBA", size)
        cases += [
            (f"lossy alpha {size}", _encode(rgba[0], "WEBP")),
            (f"lossless alpha {size}", _encode(rgba[0], "WEBP", lossless=True)),
            (f"animated {size}", _encode(rgba[0], "WEBP", save_all=True, append_images=rgba[1:], duration=40)),
            (f"exif {size}", _encode(_image("RGB", size), "WEBP", exif=_exif())),
        ]
    return cases


def _bmp_cases() -> list[tuple[str, bytes]]:
    cases = []
    for size in [*SIZES, (65535, 1)]:
        cases.append((f"rgb {size}", _encode(_image("RGB", size), "BMP")))
    for size in SIZES:
        cases += [
            (f"rgba {size}", _encode(_image("RGBA", size), "BMP")),
            (f"palette {size}", _encode(_image("RGB", size).convert("P"), "BMP")),
            (f"grey {size}", _encode(_image("L", size), "BMP")),
            (f"1-bit {size}", _encode(_image("1", size), "BMP")),
        ]
    return cases


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG of ~60 bytes whose IHDR claims any size (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_with_sof(width: int, height: int) -> bytes:
    """Pillow's tiny JPEG with the frame header's size fields rewritten: Pillow reads the size without decoding."""
    data = bytearray(_encode(_image("RGB", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _bmp_rewritten(width: int, height: int, *, top_down: bool = False) -> bytes:
    data = bytearray(_encode(_image("RGB", (4, 4)), "BMP"))
    data[18:26] = struct.pack("<Ii", width, -height if top_down else height)
    return bytes(data)


def _bmp_os2(width: int, height: int) -> bytes:
    """A 24-bit OS/2 1.x bitmap (12-byte header with 16-bit sizes), which Pillow reads but no longer writes."""
    row = (width * 3 + 3) // 4 * 4
    pixels = bytes(row * height)
    header = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + header + pixels


def _gif_with_frame(screen: tuple[int, int], frame: tuple[int, int, int, int]) -> bytes:
    """A one-pixel-palette GIF whose first image lies partly outside the logical screen."""
    head = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    return head + b"," + struct.pack("<HHHHB", *frame, 0) + b"\x02\x02\x44\x01\x00;"


CRAFTED = [
    ("png 40000x40000", _png_claiming(40_000, 40_000)),
    ("png 2^31-1 wide", _png_claiming(2**31 - 1, 3)),
    ("jpeg 65535x65535", _jpeg_with_sof(65535, 65535)),
    ("bmp 100000x70000", _bmp_rewritten(100_000, 70_000)),
    ("bmp top-down", _bmp_rewritten(300, 200, top_down=True)),
    ("bmp os/2 1.x", _bmp_os2(7, 5)),
    ("gif frame beyond the screen", _gif_with_frame((10, 10), (100, 3, 200, 20))),
    ("gif frame inside the screen", _gif_with_frame((300, 300), (1, 2, 3, 4))),
]
ENCODED = _jpeg_cases() + _png_cases() + _gif_cases() + _bmp_cases() + _webp_cases()


@pytest.mark.parametrize(("case", "data"), ENCODED + CRAFTED, ids=[c for c, _ in ENCODED + CRAFTED])
def test_agrees_with_pillow(monkeypatch, case, data):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the crafted headers claim bombs; Pillow reads them lazily
    assert header_size(data) == _pillow_size(data)


def test_webp_variants_are_the_ones_meant():
    """The WebP cases cover all three chunk kinds a file can start with."""
    kinds = {data[12:16] for _, data in ENCODED if data[:4] == b"RIFF"}
    assert kinds == {b"VP8 ", b"VP8L", b"VP8X"}


def _some_encodings() -> list[tuple[str, bytes]]:
    rgb = _image("RGB", (37, 29))
    frames = _frames("RGBA", (37, 29))
    return [
        ("jpeg exif", _encode(rgb, "JPEG", exif=_exif(), comment=b"c", quality=30)),
        ("jpeg progressive", _encode(rgb, "JPEG", progressive=True, quality=30)),
        ("png", _encode(rgb, "PNG")),
        ("gif animated", _encode(frames[0].convert("P"), "GIF", save_all=True, append_images=frames[1:])),
        ("bmp", _encode(rgb, "BMP")),
        ("bmp os/2", _bmp_os2(7, 5)),
        ("webp lossy", _encode(rgb, "WEBP")),
        ("webp lossless", _encode(rgb, "WEBP", lossless=True)),
        ("webp animated", _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])),
    ]


@pytest.mark.parametrize(("case", "data"), _some_encodings(), ids=[c for c, _ in _some_encodings()])
def test_every_truncation_gives_none_or_the_full_size(case, data):
    full = _pillow_size(data)
    assert header_size(data) == full
    for cut in range(len(data)):
        assert header_size(data[:cut]) in (None, full), cut


@pytest.mark.parametrize(("case", "data"), _some_encodings(), ids=[c for c, _ in _some_encodings()])
def test_damaged_headers_never_raise(case, data):
    rng = random.Random(case)
    for _ in range(2000):
        damaged = bytearray(data[: rng.choice([40, 200, len(data)])])
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(3, min(len(damaged), 120))] = rng.randrange(256)
        size = header_size(bytes(damaged))
        assert size is None or (len(size) == 2 and min(size) > 0)


def test_what_is_not_an_image_gives_none():
    rng = random.Random(7)
    noise = [rng.randbytes(rng.randint(1, 4000)) for _ in range(500)]
    others = [
        b"",
        b"\xff",
        b"\xff\xd8",
        b"<!DOCTYPE html><html><body>not found</body></html>",
        b"GIF89a",
        b"BM",
        b"RIFF\0\0\0\0WEBPVP8 ",
        b"RIFF\x24\0\0\0WAVEfmt " + bytes(40),
        _encode(_image("RGB", (5, 5)), "TIFF"),
    ]
    assert [header_size(d) for d in noise + others] == [None] * len(noise + others)


def test_zero_sizes_and_ambiguous_headers_give_none():
    """Pillow refuses empty images, and reads these malformed headers differently from their specifications."""
    jpeg = _encode(_image("RGB", (8, 8)), "JPEG")
    sof = jpeg.index(b"\xff\xc0")
    segment = jpeg[sof : sof + 2 + struct.unpack(">H", jpeg[sof + 2 : sof + 4])[0]]
    second_frame = jpeg[:sof] + segment + segment + jpeg[sof + len(segment) :]
    junk_between = jpeg[:sof] + b"\x00" + jpeg[sof:]
    gce_without_data = _gif_with_frame((4, 4), (0, 0, 4, 4)).replace(b"\xff\xff\xff,", b"\xff\xff\xff!\xf9\x00,", 1)
    small, bomb = _png_claiming(8, 8), _png_claiming(40_000, 40_000)
    second_ihdr = small[:33] + bomb[8:33] + small[33:]  # Pillow takes the second
    for data in (
        _png_claiming(0, 10),
        _jpeg_with_sof(10, 0),
        _bmp_rewritten(0, 4),
        second_frame,
        junk_between,
        gce_without_data,
        second_ihdr,
    ):
        assert header_size(data) is None


class FakeResizer:
    """Records what the guard passes on, in place of img2dataset's OpenCV resizer."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int, Any]] = []

    def __call__(self, img_stream: Any, blurring_bbox_list: Any = None) -> tuple[Any, ...]:
        position = img_stream.tell()
        self.calls.append((img_stream.read(), position, blurring_bbox_list))
        return b"resized", 64, 64, 1, 1, None


def test_pixel_limit_refuses_a_bomb_without_calling_the_resizer():
    bomb = _png_claiming(40_000, 40_000)
    assert len(bomb) < 100
    assert header_size(bomb) == (40_000, 40_000)
    resizer = FakeResizer()
    result = PixelLimit(resizer, 89_478_485)(io.BytesIO(bomb))
    assert result == (None, None, None, 40_000, 40_000, f"{TOO_MANY_PIXELS}: 40000x40000 > 89478485 pixels")
    assert resizer.calls == []


@pytest.mark.parametrize("wrap", [io.BytesIO, lambda data: io.BufferedReader(io.BytesIO(data))])
def test_pixel_limit_passes_a_normal_image_on_from_its_start(wrap):
    jpeg = _encode(_image("RGB", (640, 480)), "JPEG")
    resizer = FakeResizer()
    assert PixelLimit(resizer, 89_478_485)(wrap(jpeg), [(0, 0, 1, 1)]) == (b"resized", 64, 64, 1, 1, None)
    assert resizer.calls == [(jpeg, 0, [(0, 0, 1, 1)])]


def test_pixel_limit_asks_pillow_about_other_formats():
    """A TIFF is not parsed here; Pillow's header read still catches one above the limit. What neither reads a size
    from is refused too: it never reaches the decoder."""
    tiff = _encode(_image("L", (100, 100)), "TIFF")
    resizer = FakeResizer()
    guard = PixelLimit(resizer, 9_999)
    assert guard(io.BytesIO(tiff))[3:] == (100, 100, f"{TOO_MANY_PIXELS}: 100x100 > 9999 pixels")
    assert guard(io.BytesIO(b"plain text, not an image")) == (None, None, None, None, None, UNREADABLE_SIZE)
    assert resizer.calls == []


def _tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF of a few dozen bytes whose only IFD claims ``width`` x ``height`` 8-bit grey pixels."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8), (277, 3, 1)]
    tags += [(278, 4, height), (279, 4, 1)]
    entries = b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags)
    ifd = struct.pack("<H", len(tags)) + entries
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def test_pixel_limit_refuses_what_pillow_calls_a_bomb():
    """Above twice its own limit Pillow raises instead of giving a size; the guard refuses, it does not pass on."""
    resizer = FakeResizer()
    result = PixelLimit(resizer, 89_478_485)(io.BytesIO(_tiff_claiming(40_000, 40_000)))
    assert result[:5] == (None, None, None, None, None)
    assert result[5].startswith(f"{TOO_MANY_PIXELS}: ") and "1600000000" in result[5]
    assert resizer.calls == []
