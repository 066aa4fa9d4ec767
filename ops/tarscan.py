"""Reading webdataset tars without ever taking damage for the end: counting a local tar's samples from its headers
(the download stage's books check), and streaming a tar's samples with every header verified.

``tarfile`` in stream mode stops at the first header whose checksum fails and reports a normal end, so a tar with
one damaged header in the middle would pass for a shorter one and every later sample would look missing.
:func:`iter_samples` walks the headers itself instead: a bad checksum, a size the data cannot hold, data cut short
or a missing end-of-archive marker raise :class:`CorruptTar`, and once the whole tar has been read its sample keys
can be checked against the ones the caller expects (the download ledger's), so that absence and corruption are
told apart.
"""

from __future__ import annotations

import mmap
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

_BLOCK = 512
_ZEROS = bytes(_BLOCK)
_REGULAR = (b"0", b"\0", b"7")
# Headers per numpy pass of the checksum check: bounds its copy of the headers to 8 MiB however long the tar.
_CHECK_CHUNK = 16384
_OCTAL_PLACES = 8 ** np.arange(5, -1, -1, dtype=np.int64)
# A member bigger than this is no image sample's file: only a corrupt (or hostile) header declares one.
MAX_MEMBER_BYTES = 1 << 30


class CorruptTar(ValueError):
    """A tar whose headers or data are damaged, or whose samples are not the ones it should hold."""


def sample_keys(path: Path) -> set[str]:
    """The webdataset sample keys of every regular file in an uncompressed tar on local disk.

    Reads only the 512-byte headers and skips over the file data. ``tarfile.getmembers`` parses and checksums
    every header field in Python, which cost about a second per 10,000-image download shard — more than a tenth of
    the overhead budget the download stage has over plain img2dataset. Handles ustar prefixes, pax (``x``) and GNU
    long-name (``L``) headers and base-256 sizes; anything else is refused loudly.

    img2dataset writes a pax header before every member, so a 10,000-image shard has ~60,000 headers, and summing
    each one in Python was most of the remaining cost. The file is memory-mapped and walked first; the checksums of
    all the headers the walk read are then checked in one numpy pass. A corrupt header is refused as before, with
    the offset of the first bad one, even when the walk tripped over it first.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:  # mmap refuses an empty file
            return set()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            offsets: list[int] = []
            try:
                keys = _walk(mm, offsets)
            except Exception:
                _check_headers(path, mm, offsets)  # a corrupt header, not the parse, is what to report
                raise
            _check_headers(path, mm, offsets)
            return keys


def _walk(mm: mmap.mmap, offsets: list[int]) -> set[str]:
    """The keys, trusting every header; appends each header's offset to ``offsets`` before it parses the header.

    Until the checksums are checked a corrupt header may steer the walk anywhere, so it only ever moves forward
    (see :func:`_padded` and :func:`_pax_records`) and always ends.
    """
    keys: set[str] = set()
    long_name: bytes | None = None
    pax: dict[bytes, bytes] = {}
    pos = 0
    while pos + _BLOCK <= len(mm):
        header = mm[pos : pos + _BLOCK]
        if header == _ZEROS:
            break
        offsets.append(pos)
        pos += _BLOCK
        size = _number(header[124:136])
        kind = header[156:157]
        if kind in (b"x", b"L", b"g"):  # extended headers; a global one (g) names no member and is read past
            data = mm[pos : pos + size]
            if kind == b"L":
                long_name = data.rstrip(b"\0")
            elif kind == b"x":
                pax = _pax_records(data)
            pos += _padded(size)
            continue
        name = long_name or pax.get(b"path") or _ustar_name(header)
        size = int(pax[b"size"]) if b"size" in pax else size
        long_name, pax = None, {}
        if kind in _REGULAR:
            keys.add(name.decode("utf-8", "surrogateescape").rsplit("/", 1)[-1].split(".", 1)[0])
        pos += _padded(size)
    return keys


def _check_headers(path: Path, mm: mmap.mmap, offsets: list[int]) -> None:
    """Refuse the tar at the first header whose checksum fails.

    numpy checks the unsigned sum of headers whose checksum field has the usual six octal digits and a NUL (what
    tarfile, GNU tar and webdataset write); any header that fails it or has another field layout goes to
    :func:`_checksum_ok`, which also accepts the signed sums of old writers.
    """
    # A view of the mapping: dropped on every way out, or the mapping could not be closed.
    blocks = np.frombuffer(mm, dtype=np.uint8, count=len(mm) // _BLOCK * _BLOCK).reshape(-1, _BLOCK)
    try:
        for start in range(0, len(offsets), _CHECK_CHUNK):
            chunk = offsets[start : start + _CHECK_CHUNK]
            rows = blocks[np.asarray(chunk) // _BLOCK]
            field = rows[:, 148:156]
            digits = field[:, :6].astype(np.int64) - ord("0")
            usual = ((digits >= 0) & (digits <= 7)).all(axis=1) & (field[:, 6] == 0)
            unsigned = rows.sum(axis=1, dtype=np.int64) - field.sum(axis=1, dtype=np.int64) + 8 * 32
            for i in np.flatnonzero(~usual | (digits @ _OCTAL_PLACES != unsigned)):
                if not _checksum_ok(rows[i].tobytes()):
                    raise tarfile.ReadError(f"{path}: bad header checksum at byte {chunk[i]}")
    finally:
        del blocks


def _padded(size: int) -> int:
    """The bytes a member's data fills, whole blocks; a negative size (only a corrupt header has one) is refused."""
    if size < 0:
        raise ValueError(f"negative member size {size}")
    return -(-size // _BLOCK) * _BLOCK


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or base-256 when the high bit of the first byte is set."""
    if field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _checksum_ok(header: bytes) -> bool:
    """The stored checksum matches the header's bytes summed unsigned (POSIX) or signed (some old writers)."""
    stored = _number(header[148:156])
    unsigned = sum(header) - sum(header[148:156]) + 8 * 32
    if stored == unsigned:
        return True
    high = header[:148] + header[156:]
    return stored == unsigned - 256 * (len(high) - len(high.translate(None, bytes(range(128, 256)))))


def _ustar_name(header: bytes) -> bytes:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            return prefix + b"/" + name
    return name


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """``"<length> <key>=<value>\\n"`` records of a pax extended header."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        length = int(data[pos : data.index(b" ", pos)])
        if length < 1:  # would never end; only a corrupt header's data has one
            raise ValueError(f"bad pax record length {length}")
        key, _, value = data[data.index(b" ", pos) + 1 : pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


def _read(f: BinaryIO, n: int) -> bytes:
    """Exactly ``n`` bytes, or fewer only at the end of the file."""
    parts, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def iter_files(f: BinaryIO, source: str) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` of every regular file of a tar read as a stream, every header's checksum verified; raises
    :class:`CorruptTar` (naming ``source`` and the byte offset) at the first damage, including an end of file
    before the end-of-archive marker."""
    offset = 0
    long_name: bytes | None = None
    pax: dict[bytes, bytes] = {}
    while True:
        header = _read(f, _BLOCK)
        if header == _ZEROS:  # the end-of-archive marker: only zeros may follow it (a zeroed header is damage)
            while chunk := f.read(1 << 20):
                if chunk.strip(b"\0"):
                    raise CorruptTar(f"{source}: data after an all-zero header at byte {offset}")
            return
        if len(header) < _BLOCK:
            raise CorruptTar(f"{source}: ends at byte {offset + len(header)}, before its end-of-archive marker")
        try:
            valid = _checksum_ok(header)
        except ValueError:  # not even a number where the checksum belongs
            valid = False
        if not valid:
            raise CorruptTar(f"{source}: bad header checksum at byte {offset}")
        try:
            size = _number(header[124:136])
            kind = header[156:157]
            if kind in (b"x", b"L", b"g") and size > MAX_MEMBER_BYTES:
                raise ValueError(f"extended header of {size} bytes")
            data = _read(f, size) if kind in (b"x", b"L", b"g") else b""
            if kind == b"L":
                long_name = data.rstrip(b"\0")
            elif kind == b"x":
                pax = _pax_records(data)
            elif kind != b"g":  # a global pax header is read past; it names no member
                name = long_name or pax.get(b"path") or _ustar_name(header)
                size = int(pax[b"size"]) if b"size" in pax else size
                long_name, pax = None, {}
        except (ValueError, IndexError) as exc:
            raise CorruptTar(f"{source}: unreadable header at byte {offset}: {exc}") from None
        if size < 0 or size > MAX_MEMBER_BYTES:
            raise CorruptTar(f"{source}: header at byte {offset} declares {size} bytes")
        if kind in (b"x", b"L", b"g"):
            if len(data) < size:
                raise CorruptTar(f"{source}: extended header at byte {offset} cut short")
        elif kind in _REGULAR:
            data = _read(f, size)
            if len(data) < size:
                raise CorruptTar(f"{source}: {name.decode('utf-8', 'replace')} at byte {offset} cut short")
        elif size and len(_read(f, size)) < size:
            raise CorruptTar(f"{source}: member at byte {offset} cut short")
        padding = _padded(size) - size
        if padding and len(_read(f, padding)) < padding:
            raise CorruptTar(f"{source}: ends inside the member at byte {offset}")
        offset += _BLOCK + _padded(size)
        if kind in _REGULAR:
            yield name.decode("utf-8", "surrogateescape"), data


def iter_samples(
    f: BinaryIO, source: str, expected_keys: Iterable[str] | None = None
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` per webdataset sample (a run of consecutive files sharing the basename's part
    before the first dot; the extension is the rest, lower-cased), from :func:`iter_files`.

    With ``expected_keys``, a tar read to its end must hold exactly those sample keys, else :class:`CorruptTar`
    (a caller that stops early, having found what it wanted, skips that check and the rest of the tar).
    """
    seen: set[str] = set()
    key: str | None = None
    sample: dict[str, bytes] = {}
    for name, data in iter_files(f, source):
        k, _, ext = name.rsplit("/", 1)[-1].partition(".")
        if k != key and sample:
            yield key, sample  # type: ignore[misc]
            sample = {}
        key = k
        seen.add(k)
        sample[ext.lower()] = data
    if sample:
        yield key, sample  # type: ignore[misc]
    if expected_keys is not None:
        expected = set(expected_keys)
        if seen != expected:
            missing, extra = len(expected - seen), len(seen - expected)
            raise CorruptTar(
                f"{source}: holds {len(seen)} samples, expected {len(expected)} ({missing} missing, {extra} unexpected)"
            )
