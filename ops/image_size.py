"""An encoded image's width and height from its first bytes, without Pillow.

The download guard (:class:`ops.download_guard.PixelLimit`) needs the size an image's header claims before OpenCV
decodes it. ``PIL.Image.open`` finds it, but builds a whole plugin object per image (20-30 µs), and the guard runs in
img2dataset's GIL-bound downloader process, where that is about 1% of the download stage's wall time. The formats
that make up nearly all web images keep their size at a fixed offset or a short marker walk away, so a few byte
reads answer for them and Pillow is left for the rest. The formats OpenCV decodes and Pillow does not (PAM, colour
PFM, Radiance HDR) are read here too, since an image whose size nobody read is refused.

:func:`header_size` returns what the header claims, and agrees with ``Image.open(...).size`` wherever Pillow opens
the file (and with OpenCV where only OpenCV does: a BMP header size Pillow does not know). Where Pillow and the
format's specification read a malformed header differently (two PNG IHDR chunks or JPEG frame headers, a GIF
extension that starts with its own terminator), it returns ``None`` so that the caller asks Pillow. It never raises:
truncated or unknown data gives ``None`` or, when the size fields came before the cut, the full file's size.
"""

from __future__ import annotations

import re
import struct

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_U16_BE = struct.Struct(">H")
_U32_BE = struct.Struct(">I")
_U16_BE_PAIR = struct.Struct(">HH")
_U32_BE_PAIR = struct.Struct(">II")
_U16_LE_PAIR = struct.Struct("<HH")
_U32_LE = struct.Struct("<I")
_GIF_DESCRIPTOR = struct.Struct("<HHHH")

# Chunks before a PNG's image data: a handful of colour, text and metadata chunks in practice.
_PNG_MAX_CHUNKS = 1024
# JPEG frame headers (SOFn) hold the size; C4 (DHT), C8 (JPG) and CC (DAC) sit in the same range but are not frames.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
# Markers with a length field that may come before the first scan and are skipped whole.
_JPEG_SEGMENTS = frozenset((0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xDF, 0xFE, *range(0xE0, 0xF0)))
# Standalone markers (no length): TEM, RST0-7 and a repeated SOI.
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD9)))
_JPEG_SOS = 0xDA
# Enough for any real header (ICC profiles split over APP2 segments, XMP, thumbnails); a longer walk gets ``None``.
_JPEG_MAX_MARKERS = 1024
# A GIF's extensions before its first image: comments are split into 255-byte sub-blocks, so allow many.
_GIF_MAX_BLOCKS = 65536
_BMP_INFO_HEADERS = frozenset((40, 52, 56, 64, 108, 124))
# Netpbm: P1-P6 (bitmap, grey, colour; text or binary), P7 (PAM), PF/Pf (PFM, colour or grey floats).
_NETPBM_KINDS = frozenset(b"1234567Ff"[i : i + 1] for i in range(9))
_NETPBM_HEADER_BYTES = 4096
_HDR_MAGICS = (b"#?RADIANCE", b"#?RGBE")
_HDR_HEADER_BYTES = 65536
_SUN_MAGIC = b"\x59\xa6\x6a\x95"
_NUMBER = re.compile(rb"\d{1,12}")


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, GIF, JPEG, WebP, BMP, Netpbm (PBM, PGM, PPM, PAM, PFM),
    Radiance HDR or Sun raster image; ``None`` for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        size = _jpeg(data)
    elif data[:8] == _PNG_MAGIC:
        size = _png(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        size = _gif(data)
    elif data[:2] == b"BM":
        size = _bmp(data)
    elif data[:1] == b"P" and data[1:2] in _NETPBM_KINDS:
        size = _netpbm(data)
    elif data.startswith(_HDR_MAGICS):
        size = _hdr(data)
    elif data[:4] == _SUN_MAGIC:
        size = _U32_BE_PAIR.unpack_from(data, 4) if len(data) >= 12 else None
    else:
        return None
    if size is None or 0 in size:  # Pillow refuses empty images; a decoder has nothing to guard
        return None
    return size


def overrun(data: bytes) -> str:
    """Why a decoder would allocate more than the data holds, "" when nothing would: OpenCV's PNG reader (which
    also reads APNG) allocates each chunk's declared length before reading it, so 44 bytes whose image-data chunk
    declares 4 GiB cost 4 GiB of memory, whatever the pixel count. Every chunk up to IEND must fit in the data."""
    if data[:8] != _PNG_MAGIC:
        return ""
    end = len(data)
    pos = 8
    while pos + 8 <= end:
        length = _U32_BE.unpack_from(data, pos)[0]
        if length > end - pos - 12:
            kind = data[pos + 4 : pos + 8].decode("latin-1")
            return f"a PNG {kind!r} chunk declares {length} bytes where {max(end - pos - 12, 0)} remain"
        if data[pos + 4 : pos + 8] == b"IEND":
            return ""
        pos += 12 + length
    return ""


def _png(data: bytes) -> tuple[int, int] | None:
    """IHDR must be the first chunk; Pillow refuses one shorter than its 13 bytes.

    Pillow lets any further IHDR before the image data (IDAT, or fdAT in an animation) replace the first, so the
    chunks up to there are walked and a second IHDR makes the answer ambiguous.
    """
    end = len(data)
    if end < 24 or data[12:16] != b"IHDR":
        return None
    length = _U32_BE.unpack_from(data, 8)[0]
    if length < 13:
        return None
    size = _U32_BE_PAIR.unpack_from(data, 16)
    pos = 20 + length  # after IHDR's data and CRC
    for _ in range(_PNG_MAX_CHUNKS):
        if pos + 8 > end:
            return size
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT" or kind == b"fdAT" or kind == b"IEND":
            return size
        if kind == b"IHDR":
            return None
        pos += 12 + _U32_BE.unpack_from(data, pos)[0]
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """Walk the marker segments up to the first scan (SOS) and report the one frame header (SOFn) before it.

    Pillow keeps walking to SOS and takes the last frame header, so a second one makes the answer ambiguous. Bytes
    that are neither a marker nor fill where a marker belongs, and markers Pillow reads differently from the
    specification (DHP, JPG and JPGn, EOI before the scan, reserved codes), also give ``None``. Data that ends
    before SOS gives the frame header seen so far, as Pillow does for a file cut between segments.
    """
    size: tuple[int, int] | None = None
    end = len(data)
    pos = 2
    for _ in range(_JPEG_MAX_MARKERS):
        if pos + 1 >= end:
            return size
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before the marker
            pos += 1
            continue
        pos += 2
        if marker == _JPEG_SOS:
            return size
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > end:
            return size
        length = _U16_BE.unpack_from(data, pos)[0]
        if marker in _JPEG_SOF:
            if size is not None or length < 7 or pos + 7 > end:
                return None
            height, width = _U16_BE_PAIR.unpack_from(data, pos + 3)
            size = (width, height)
        elif marker not in _JPEG_SEGMENTS or length < 2:
            return None
        pos += length
    return None


def _gif(data: bytes) -> tuple[int, int] | None:
    """The logical screen, widened to the first image's extent, as Pillow sizes a GIF once it has opened frame 0."""
    end = len(data)
    if end < 13:
        return None
    width, height = _U16_LE_PAIR.unpack_from(data, 6)
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while pos < end:
        introducer = data[pos]
        if introducer == 0x2C:  # image descriptor: left, top, width, height
            if pos + 9 > end:
                return None
            left, top, frame_width, frame_height = _GIF_DESCRIPTOR.unpack_from(data, pos + 1)
            return max(width, left + frame_width), max(height, top + frame_height)
        if introducer != 0x21 or pos + 2 >= end:  # trailer before any image, junk, or a cut extension
            return None
        label = data[pos + 1]
        pos += 2
        # Pillow reads past the terminator when it is the first sub-block of any extension but a comment, or the
        # second of a NETSCAPE2.0 application extension; the specification stops there.
        first = data[pos]
        if first == 0 and label != 0xFE:
            return None
        second = pos + 1 + first
        if label == 0xFF and data[pos + 1 : second].startswith(b"NETSCAPE2.0") and second < end and not data[second]:
            return None
        while True:
            blocks += 1
            if pos >= end or blocks > _GIF_MAX_BLOCKS:
                return None
            length = data[pos]
            pos += 1 + length
            if length == 0:
                break
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    """The canvas of an extended file (VP8X), else the size in the single lossy (VP8) or lossless (VP8L) bitstream."""
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":  # a key frame's start code
            return None
        width, height = _U16_LE_PAIR.unpack_from(data, 26)
        return width & 0x3FFF, height & 0x3FFF  # the top two bits are upscaling hints, not size
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        bits = _U32_LE.unpack_from(data, 21)[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    """OS/2 1.x headers hold 16-bit sizes, Windows ones 32-bit sizes with a negative height for top-down rows.

    Pillow reads a height as negative only when its top byte is 0xFF; the same rule is kept for the header sizes
    Pillow knows. OpenCV, which decodes for img2dataset, reads any header of 36 bytes or more the Windows way with a
    signed height, so an unusual header size (Pillow refuses it) is read as OpenCV reads it.
    """
    if len(data) < 26:
        return None
    header = _U32_LE.unpack_from(data, 14)[0]
    if header == 12:
        return _U16_LE_PAIR.unpack_from(data, 18)
    if header < 36:
        return None
    width = _U32_LE.unpack_from(data, 18)[0]
    height = _U32_LE.unpack_from(data, 22)[0]
    if header in _BMP_INFO_HEADERS:
        return width, (1 << 32) - height if data[25] == 0xFF else height
    return width, (1 << 32) - height if height >= 1 << 31 else height


def _netpbm_tokens(data: bytes) -> list[bytes]:
    """The whitespace-separated header tokens after the magic number, ``#`` comments left out."""
    head = data[2:_NETPBM_HEADER_BYTES]
    return re.sub(rb"#[^\n\r]*", b" ", head).split()


def _netpbm(data: bytes) -> tuple[int, int] | None:
    """P1-P6 and PF/Pf: width and height are the first two numbers; P7 (PAM): the WIDTH and HEIGHT lines."""
    if data[2:3] not in (b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c"):
        return None
    tokens = _netpbm_tokens(data)
    if data[1:2] == b"7":
        header = tokens[: tokens.index(b"ENDHDR")] if b"ENDHDR" in tokens else []
        fields: dict[bytes, bytes] = {}
        for key, value in zip(header[0::2], header[1::2], strict=False):
            fields.setdefault(key, value)
        values = fields.get(b"WIDTH"), fields.get(b"HEIGHT")
    else:
        values = (tokens[0], tokens[1]) if len(tokens) >= 2 else (None, None)
    if not all(v is not None and _NUMBER.fullmatch(v) for v in values):
        return None
    return int(values[0]), int(values[1])


def _hdr(data: bytes) -> tuple[int, int] | None:
    """Radiance: header lines up to a blank line, then the resolution line (``-Y 480 +X 640``, in any of the eight
    orientations)."""
    blank = data.find(b"\n\n", 0, _HDR_HEADER_BYTES)
    if blank < 0:
        return None
    line = data[blank + 2 : data.find(b"\n", blank + 2, blank + 128)].split()
    if len(line) != 4 or not all(_NUMBER.fullmatch(v) for v in line[1::2]):
        return None
    axes = {line[0][-1:]: int(line[1]), line[2][-1:]: int(line[3])}
    if set(axes) != {b"X", b"Y"} or line[0][:1] not in b"+-" or line[2][:1] not in b"+-":
        return None
    return axes[b"X"], axes[b"Y"]
