"""Image headers that claim any size in a few bytes, in the formats OpenCV decodes and the issue named: a
run-length BMP with an unusual header size, PAM, colour PFM, a greymap with comments, Radiance HDR, a float TIFF
and a Sun raster. Shared by the guard's tests, the real download test and the fuzz targets."""

from __future__ import annotations

import struct


def rle_bmp(width: int, height: int, header: int = 44) -> bytes:
    """A ~1 KB run-length BMP with an info header of unusual size: OpenCV reads any size of 36 or more."""
    info = struct.pack("<IiiHHIIiiII", header, width, height, 1, 8, 1, 0, 2835, 2835, 0, 0)
    info += b"\x00" * (header - len(info))
    palette = b"\x00\x00\x00\x00" * 256
    data = b"\x00\x01"  # end of bitmap
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def pam(width: int, height: int) -> bytes:
    return b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" % (width, height)


def pfm(width: int, height: int) -> bytes:
    return b"PF\n%d %d\n-1.0\n" % (width, height)


def pgm(width: int, height: int) -> bytes:
    """A binary greymap whose header hides its size between comments."""
    return b"P5\n# a comment\n%d\n# another\n%d 255\n" % (width, height)


def hdr(width: int, height: int) -> bytes:
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=1\n\n-Y %d +X %d\n" % (height, width)


def float_tiff(width: int, height: int) -> bytes:
    """A TIFF of 32-bit float samples (SampleFormat 3), a few dozen bytes."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 32), (259, 3, 1), (262, 3, 1), (273, 4, 8), (277, 3, 1)]
    tags += [(278, 4, height), (279, 4, 4), (339, 3, 3)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in tags)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def sun(width: int, height: int) -> bytes:
    return b"\x59\xa6\x6a\x95" + struct.pack(">IIIIIII", width, height, 24, 0, 1, 0, 0)


HOSTILE = {
    "rle_bmp": rle_bmp,
    "pam": pam,
    "pfm": pfm,
    "pgm": pgm,
    "hdr": hdr,
    "float_tiff": float_tiff,
    "sun": sun,
}
