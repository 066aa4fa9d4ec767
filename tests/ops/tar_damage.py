"""Damage a tar the ways a lake's file gets damaged: a header byte flipped, a header block zeroed, the file cut, a
sample gone from an otherwise valid tar. Shared by the tests of every reader of ``download/<shard>.tar``."""

from __future__ import annotations

import io
import tarfile

KINDS = ("flip_header", "zero_header", "cut", "drop_sample")


def header_offsets(data: bytes) -> list[int]:
    """Byte offsets of a tar's headers, extended headers included."""
    offsets, pos = [], 0
    while pos + 512 <= len(data) and data[pos : pos + 512] != bytes(512):
        offsets.append(pos)
        size = int(data[pos + 124 : pos + 136].split(b"\0", 1)[0].strip() or b"0", 8)
        pos += 512 + -(-size // 512) * 512
    return offsets


def without_sample(data: bytes, key: str) -> bytes:
    """The same tar, rewritten without the files of sample ``key``: valid, one sample short."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            if member.isfile() and member.name.rsplit("/", 1)[-1].split(".", 1)[0] != key:
                dst.addfile(member, src.extractfile(member))
    return out.getvalue()


def damaged(data: bytes, kind: str, where: int) -> bytes:
    """``data`` damaged by ``kind`` at a place chosen by ``where`` (never the first header: a tar damaged there is
    refused by every reader anyway)."""
    offsets = header_offsets(data)
    header = offsets[1 + where % (len(offsets) - 1)]
    if kind == "flip_header":
        at = header + where % 512
        return data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :]
    if kind == "zero_header":
        return data[:header] + bytes(512) + data[header + 512 :]
    if kind == "cut":
        return data[: 1 + where % (offsets[-1] + 511)]
    if kind == "drop_sample":
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            keys = sorted({m.name.rsplit("/", 1)[-1].split(".", 1)[0] for m in tf if m.isfile()})
        return without_sample(data, keys[where % len(keys)])
    raise ValueError(kind)
