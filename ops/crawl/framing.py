"""Split a WARC or WAT file into records and skipped spans, so that every byte of it is accounted for.

Left to find records on its own, FastWARC ends a file early without a word in ways a damaged or hostile file
triggers easily: an empty gzip member, junk before an uncompressed record's ``WARC/1.`` line with no newline
between them, a ``Content-Length`` that runs over the following records (they become the first one's body).
So the records are found here and FastWARC only parses each one (:mod:`ops.crawl.records`):

- A gzip file is inflated one member at a time. A member's bytes are handed on only once its CRC has checked out
  (or once it is too big to hold, see :data:`HOLD_BYTES`), so no record is built from a corrupt member. An empty
  member, or one holding junk, is just a member; one that fails to inflate is a *gap*: its bytes are skipped up to
  the next offset where a member starts and inflates. A member that inflates past the bomb limit is cut the same
  way, with its own reason.
- Records are framed by their header block and ``Content-Length``. The length is trusted when the record ends
  where the next ``WARC/1.`` header (or the end of the data) begins, and, in a gzip file, when no later member that
  starts with a ``WARC/1.`` header falls inside it. Otherwise the record is cut at the first ``WARC/1.`` inside it
  and reading resumes there (``length_mismatch``). The one case left undecidable is an uncompressed record whose
  length covers exactly some whole records after it: a record may legally hold a WARC file.
- Bytes that belong to no record are a skipped span with a reason; adjacent ones are reported as one span.
- :class:`ReadTotals` proves it: the reader consumed the whole file, and every inflated byte lies in a record, a
  separator (the CR/LF between records) or a skipped span.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from fastwarc.stream_io import Lz4Reader, ZstdReader
from isal import isal_zlib

from ops.crawl.reasons import CORRUPT_RECORD, LENGTH_MISMATCH, OVERSIZED_RECORD, TRUNCATED_RECORD

MAX_BODY_BYTES = 32 << 20  # bigger "pages" are media or dumps; their first 32 MiB are parsed, like CC's 1 MiB cut
MAX_CONTENT_BYTES = MAX_BODY_BYTES + (1 << 20)  # a record's content kept for parsing: the body plus HTTP headers
MAX_HEADER_BYTES = 256 << 10  # a WARC header block longer than this is junk
HOLD_BYTES = 64 << 20  # a gzip member is held (and CRC-checked) up to this size before its bytes are handed on
# A gzip member that inflates past both of these is a bomb: real WARC members compress about 5:1, deflate allows
# about 1000:1.
BOMB_FLOOR_BYTES = 256 << 20
BOMB_RATIO = 100

WARC_MAGIC = b"WARC/1."
GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_IN_CHUNK = 1 << 14
_OUT_CHUNK = 1 << 20
_SEPARATORS = b"\r\n"
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,18})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


@dataclass(slots=True)
class Frame:
    """A record (``data`` holds its header block and content, the content cut at :data:`MAX_CONTENT_BYTES`) or a
    skipped span (``record`` False, ``data`` empty). ``reason`` is "" for a whole record, else what is wrong.
    ``start`` and ``end`` are offsets in the inflated data."""

    record: bool
    data: bytes
    reason: str
    start: int
    end: int


@dataclass(slots=True)
class ReadTotals:
    """What one read of a file covered; :func:`ops.crawl.books.read_problems` checks that it adds up."""

    source_bytes: int = 0  # the file's size
    bytes_read: int = 0  # how far into the file reading got
    inflated_bytes: int = 0  # bytes the file decodes to (its size, when uncompressed)
    record_bytes: int = 0
    separator_bytes: int = 0
    skipped_bytes: int = 0
    skipped_spans: int = 0
    records: int = 0

    def to_extra(self) -> dict[str, int]:
        return {f"read.{name}": getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class _Piece:
    """Inflated bytes (never spanning two gzip members), or a gap (``gap`` is its reason) before the next piece."""

    data: bytes
    member_start: bool = False
    gap: str = ""


class _Plain:
    """An uncompressed file: seekable, so a record whose length lied can be re-read from inside."""

    seekable = True

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self.bytes_read = 0

    def pieces(self, start: int = 0) -> Iterator[_Piece]:
        self._f.seek(start)
        pos = start
        while chunk := self._f.read(_OUT_CHUNK):
            pos += len(chunk)
            self.bytes_read = max(self.bytes_read, pos)
            yield _Piece(chunk)
        self.bytes_read = self.size


class _Codec:
    """A zstd or lz4 file, through FastWARC's readers. Its frames are not resynchronised: after a decoding error
    the rest of the file is one gap."""

    seekable = False

    def __init__(self, f: BinaryIO, size: int, reader: Any) -> None:
        self._f = f
        self.size = size
        self._reader = reader
        self.bytes_read = 0

    def pieces(self, start: int = 0) -> Iterator[_Piece]:
        self._f.seek(0)
        stream = self._reader(self._f)
        while True:
            try:
                chunk = stream.read(_OUT_CHUNK)
            except (OSError, ValueError):
                self.bytes_read = self.size
                yield _Piece(b"", gap=CORRUPT_RECORD)
                return
            if not chunk:
                break
            yield _Piece(chunk)
        self.bytes_read = self.size


class _Gzip:
    """A gzip file, inflated member by member (see the module docstring)."""

    seekable = False

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self.bytes_read = 0

    def pieces(self, start: int = 0) -> Iterator[_Piece]:
        carry = b""  # bytes read past the end of the last member: the start of the next one
        while start < self.size:
            held: list[bytes] = []
            outcome = yield from self._member(start, carry, held)
            if isinstance(outcome, tuple):  # the member ended whole
                start, carry = outcome
                continue
            carry = b""
            if outcome == TRUNCATED_RECORD:  # the file ends inside the member: hand on what it gave, then say so
                yield from (_Piece(data, i == 0) for i, data in enumerate(held))
                yield _Piece(b"", gap=outcome)
                break
            following = _find(self._f, GZIP_MAGIC, start + 1, self.size)
            start = self.size if following is None else following
            self.bytes_read = max(self.bytes_read, start)
            yield _Piece(b"", gap=outcome)
        self.bytes_read = self.size

    def _member(self, start: int, data: bytes, held: list[bytes]) -> Generator[_Piece, None, tuple[int, bytes] | str]:
        """Inflate the member at ``start`` (``data``: its first bytes, if already read). Returns where it ended
        and the bytes read past that end, or why it failed. Its pieces stay in ``held`` until it has ended whole,
        unless it outgrew :data:`HOLD_BYTES` and they were handed on already."""
        if self._f.tell() != start + len(data):  # after a gap; otherwise the file is already there
            self._f.seek(start + len(data))
        inflater = isal_zlib.decompressobj(31)  # ISA-L: zlib's format, inflated in half zlib's time
        consumed = inflated = 0
        released = False
        while not inflater.eof:
            if not data:
                data = self._f.read(_IN_CHUNK)
                if not data:
                    self.bytes_read = self.size
                    return TRUNCATED_RECORD
            try:
                out = inflater.decompress(data, _OUT_CHUNK)
            except isal_zlib.error:
                return CORRUPT_RECORD
            rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            consumed += len(data) - len(rest)
            data = rest
            self.bytes_read = max(self.bytes_read, start + consumed)
            if not out:
                continue
            inflated += len(out)
            if inflated > BOMB_FLOOR_BYTES and inflated > BOMB_RATIO * consumed:
                return OVERSIZED_RECORD
            if released:
                yield _Piece(out)
            elif inflated > HOLD_BYTES:
                released = True
                yield from (_Piece(piece, i == 0) for i, piece in enumerate([*held, out]))
                held.clear()
            else:
                held.append(out)
        if not released:
            yield from (_Piece(piece, i == 0) for i, piece in enumerate(held))
        return start + consumed, data


def _find(f: BinaryIO, magic: bytes, start: int, size: int) -> int | None:
    """Offset of the next ``magic`` at or after ``start`` in the file, scanning in chunks."""
    f.seek(start)
    pos, carry = start, b""
    while pos < size and (chunk := f.read(_OUT_CHUNK)):
        buf = carry + chunk
        hit = buf.find(magic)
        if hit >= 0:
            return pos - len(carry) + hit
        carry = buf[-(len(magic) - 1) :]
        pos += len(chunk)
    return None


def _decoder(f: BinaryIO) -> _Plain | _Gzip | _Codec:
    size = f.seek(0, 2)
    f.seek(0)
    head = f.read(4)
    f.seek(0)
    if head[:3] == GZIP_MAGIC:
        return _Gzip(f, size)
    if head == _ZSTD_MAGIC:
        return _Codec(f, size, ZstdReader)
    if head == _LZ4_MAGIC:
        return _Codec(f, size, Lz4Reader)
    return _Plain(f, size)


class _Window:
    """The inflated data around the reading position, with the offsets where gzip members start.

    Offsets are absolute (in the inflated data). A gap is a wall: :meth:`fill` stops at it until
    :meth:`cross_gap` is called, so nothing is ever read across lost bytes as if they were contiguous.
    """

    def __init__(self, decoder: _Plain | _Gzip | _Codec) -> None:
        self._decoder = decoder
        self._pieces = decoder.pieces()
        self._buf = bytearray()
        self.base = 0  # offset of _buf[0]
        self.end = 0  # offset after the last byte held
        self.member_starts: list[int] = []
        self.gap = ""  # reason of the gap the window has stopped at
        self.done = False
        self.furthest = 0

    def fill(self, upto: int) -> bool:
        """Read until the window reaches ``upto``; False when a gap or the end of the data comes first."""
        while self.end < upto:
            if self.gap or self.done:
                return False
            piece = next(self._pieces, None)
            if piece is None:
                self.done = True
                return False
            if piece.gap:
                self.gap = piece.gap
                return False
            if piece.member_start:
                self.member_starts.append(self.end)
            self._buf += piece.data
            self.end += len(piece.data)
            self.furthest = max(self.furthest, self.end)
        return True

    def cross_gap(self) -> None:
        self.gap = ""

    def at(self, pos: int, n: int) -> bytes:
        self.fill(pos + n)
        return bytes(self._buf[pos - self.base : pos + n - self.base])

    def byte(self, pos: int) -> int:
        return self._buf[pos - self.base]

    def slice(self, start: int, stop: int) -> bytes:
        return bytes(self._buf[start - self.base : stop - self.base])

    def find(self, needle: bytes, start: int, stop: int) -> int:
        """Offset of ``needle`` in ``[start, stop)`` of what the window holds, or -1."""
        hit = self._buf.find(needle, max(start, self.base) - self.base, min(stop, self.end) - self.base)
        return hit + self.base if hit >= 0 else -1

    def drop_before(self, pos: int) -> None:
        """Forget the bytes before ``pos`` (the buffer is compacted once the dead part is big enough)."""
        dead = min(pos, self.end) - self.base
        if dead > _OUT_CHUNK and dead * 2 > len(self._buf):
            del self._buf[:dead]
            self.base += dead
            self.member_starts = [m for m in self.member_starts if m >= self.base]

    def rewind(self, pos: int) -> bool:
        """Make ``pos`` readable again: free when the window still holds it, a seek for an uncompressed file."""
        if pos >= self.base:
            return True
        if not self._decoder.seekable:
            return False
        self._pieces = self._decoder.pieces(pos)
        self._buf = bytearray()
        self.base = self.end = pos
        self.gap, self.done = "", False
        return True

    def member_starts_at(self, pos: int) -> bool:
        i = bisect.bisect_left(self.member_starts, pos)
        return i < len(self.member_starts) and self.member_starts[i] == pos

    def member_header_in(self, start: int, stop: int) -> int:
        """The first gzip member start in ``(start, stop)`` whose bytes begin with a WARC header, or -1."""
        for i in range(bisect.bisect_right(self.member_starts, start), len(self.member_starts)):
            m = self.member_starts[i]
            if m >= stop:
                break
            if self.at(m, len(WARC_MAGIC)) == WARC_MAGIC:
                return m
        return -1


class Framer:
    """Frames one open file: iterate :meth:`frames`, then read :attr:`totals`."""

    def __init__(self, f: BinaryIO) -> None:
        self._decoder = _decoder(f)
        self._w = _Window(self._decoder)
        self.totals = ReadTotals(source_bytes=self._decoder.size)
        self._skip: Frame | None = None  # a skipped span not reported yet: the next one may continue it

    def frames(self) -> Iterator[Frame]:
        w = self._w
        pos = 0
        while True:
            after = self._after_separators(pos)
            self.totals.separator_bytes += after - pos
            pos = after
            if not w.fill(pos + 1):
                if not w.gap:
                    break
                yield from self._skipped(pos, pos, w.gap)
                w.cross_gap()
                continue
            found = self._record(pos)
            if found is None:
                following = self._next_header(pos + 1, None)
                stop = w.end if following < 0 else following
                yield from self._skipped(pos, stop, CORRUPT_RECORD)
                pos = stop
                continue
            frame, pos = found
            if self._skip is not None:
                yield self._flush_skip()
            self.totals.records += 1
            self.totals.record_bytes += frame.end - frame.start
            yield frame
            w.drop_before(pos)
        if self._skip is not None:
            yield self._flush_skip()
        self.totals.bytes_read = self._decoder.bytes_read
        self.totals.inflated_bytes = w.furthest

    def _skipped(self, start: int, stop: int, reason: str) -> Iterator[Frame]:
        """Report ``[start, stop)`` as skipped, as part of the pending span when it continues it."""
        self.totals.skipped_bytes += stop - start
        if self._skip is not None and self._skip.end == start and self._skip.reason == reason:
            self._skip.end = stop
            return
        if self._skip is not None:
            yield self._flush_skip()
        self._skip = Frame(False, b"", reason, start, stop)

    def _flush_skip(self) -> Frame:
        frame, self._skip = self._skip, None
        assert frame is not None
        self.totals.skipped_spans += 1
        return frame

    def _after_separators(self, pos: int, peek: bool = False) -> int:
        """The offset after the run of CR/LF bytes at ``pos``. Reading on, the bytes passed are forgotten; a
        ``peek`` keeps them, and stops after :data:`MAX_HEADER_BYTES` (where it answers as if the run ended)."""
        w = self._w
        if w.base <= pos < w.end and w.byte(pos) not in _SEPARATORS:  # the usual case: no separator here at all
            return pos
        start = pos
        step = 64  # separators are a few bytes; a long run is read in growing steps
        while w.fill(pos + 1):
            chunk = w.slice(pos, min(w.end, pos + step))
            run = len(chunk) - len(chunk.lstrip(_SEPARATORS))
            pos += run
            if run < len(chunk) or (peek and pos - start > MAX_HEADER_BYTES):
                break
            step = min(step * 2, _OUT_CHUNK)
            if not peek:
                w.drop_before(pos)
        return pos

    def _next_header(self, start: int, stop: int | None) -> int:
        """Offset of the first ``WARC/1.`` at or after ``start`` and before ``stop`` (None: up to a gap or the end
        of the data), or -1. Bytes scanned past are forgotten."""
        w = self._w
        pos = start
        reach = None if stop is None else stop + len(WARC_MAGIC) - 1  # a header may start just before ``stop``
        if reach is not None:
            w.fill(reach)
        while True:
            limit = w.end if reach is None else min(reach, w.end)
            hit = w.find(WARC_MAGIC, pos, limit)
            if hit >= 0:
                return hit if stop is None or hit < stop else -1
            pos = max(pos, limit - len(WARC_MAGIC) + 1)
            w.drop_before(pos)
            if (reach is not None and w.end >= reach) or not w.fill(w.end + 1):
                return -1

    def _record(self, pos: int) -> tuple[Frame, int] | None:
        """The record at ``pos`` and the offset where reading goes on, or None when no record starts there."""
        w = self._w
        if w.at(pos, len(WARC_MAGIC)) != WARC_MAGIC:
            return None
        header_end = self._header_end(pos)
        if header_end is None:  # a gap or the end of the data inside the header block
            stop = w.end
            reason = w.gap or TRUNCATED_RECORD
            w.cross_gap()
            return Frame(True, w.slice(pos, stop), reason, pos, stop), stop
        lengths = set(_CONTENT_LENGTH.findall(w.slice(pos, header_end))) if header_end > 0 else set()
        if len(lengths) != 1:  # a header block too long, without a length, or with two
            return None
        length = int(lengths.pop())
        content_end = header_end + length
        keep_end = header_end + min(length, MAX_CONTENT_BYTES)
        whole = w.fill(keep_end)
        inner = w.member_header_in(header_end, min(keep_end, w.end))
        if inner >= 0:
            return Frame(True, w.slice(pos, inner), LENGTH_MISMATCH, pos, inner), inner
        data = w.slice(pos, min(keep_end, w.end))
        oversized = OVERSIZED_RECORD if length > MAX_CONTENT_BYTES else ""
        if whole and oversized:
            whole, inner = self._pass_over(header_end, content_end)
            if inner >= 0:
                return Frame(True, data, LENGTH_MISMATCH, pos, inner), inner
        if not whole:  # a gap or the end of the data inside the content
            stop = w.end
            reason = w.gap or TRUNCATED_RECORD
            inner = self._inner_header(header_end, stop)
            if inner >= 0:
                return Frame(True, data[: inner - pos], LENGTH_MISMATCH, pos, inner), inner
            w.rewind(stop)
            w.cross_gap()
            return Frame(True, data, reason, pos, stop), stop
        ending = self._ending(content_end)
        if not ending:
            return Frame(True, data, oversized, pos, content_end), content_end
        inner = self._inner_header(header_end, content_end)
        if inner >= 0:
            return Frame(True, data[: inner - pos], LENGTH_MISMATCH, pos, inner), inner
        w.rewind(content_end)
        terminated = w.at(content_end, 4) == b"\r\n\r\n"
        if ending == TRUNCATED_RECORD:
            return Frame(True, data, oversized or TRUNCATED_RECORD, pos, content_end), content_end
        # No header inside: the declared length stands. With its terminator the record is whole and junk follows
        # it; without, the content was probably cut short.
        return Frame(True, data, oversized or ("" if terminated else LENGTH_MISMATCH), pos, content_end), content_end

    def _header_end(self, pos: int) -> int | None:
        """The offset after the blank line that ends the header block at ``pos``; None when the data stops first,
        0 when the block runs past :data:`MAX_HEADER_BYTES`."""
        w = self._w
        scanned = pos
        while True:
            limit = min(w.end, pos + MAX_HEADER_BYTES)
            crlf = w.find(b"\n\r\n", scanned, limit)
            lf = w.find(b"\n\n", scanned, limit if crlf < 0 else crlf + 2)
            if lf >= 0:
                return lf + 2
            if crlf >= 0:
                return crlf + 3
            if limit == pos + MAX_HEADER_BYTES:
                return 0
            scanned = max(pos, w.end - 2)
            if not w.fill(w.end + 1):
                return None

    def _pass_over(self, start: int, stop: int) -> tuple[bool, int]:
        """Read to the end ``stop`` of an oversized record's content without keeping it. Returns whether all of it
        was there, and the first gzip member start in it that begins with a WARC header (-1 if none)."""
        w = self._w
        while w.end < stop:
            w.drop_before(w.end)
            whole = w.fill(min(stop, w.end + _OUT_CHUNK))
            inner = w.member_header_in(start, min(stop, w.end))
            if inner >= 0 or not whole:
                return whole, inner
        return True, -1

    def _inner_header(self, start: int, stop: int) -> int:
        """The first ``WARC/1.`` in a record's content ``(start, stop)``: where the record really ends when its
        length lied. -1 when there is none, or when it could only be found by reading again what is gone."""
        if not self._w.rewind(start + 1):
            return -1
        return self._next_header(start + 1, stop)

    def _ending(self, pos: int) -> str:
        """How a record ending at ``pos`` ends: "" when, after CR/LF, a WARC header, a gzip member start or a gap
        follows, or the data ends after the record's terminator; ``truncated_record`` when the data ends before
        that terminator is whole; ``length_mismatch`` when anything else follows."""
        w = self._w
        if w.member_starts_at(pos):
            return ""
        after = self._after_separators(pos, peek=True)
        if after - pos > MAX_HEADER_BYTES:
            return ""
        if not w.fill(after + 1):
            if w.gap:
                return ""
            return "" if w.at(pos, 4) == b"\r\n\r\n" else TRUNCATED_RECORD
        return "" if w.member_starts_at(after) or w.at(after, len(WARC_MAGIC)) == WARC_MAGIC else LENGTH_MISMATCH
