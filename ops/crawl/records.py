"""Read crawl source files robustly: WARC and WAT archives record by record, URL-list parquet row group by row group.

A crawl shard is hours of someone else's download, so one damaged record must cost that record and nothing
else. FastWARC does the reading (about 3.5 times faster than warcio on the fixtures), and this module adds what
it leaves to the caller:

- Truncation is silent in FastWARC: a record whose body or gzip member is cut is handed out with fewer bytes than
  it declares, and a record cut inside its header block is handed out with the headers it got and a content
  length of 0. A body shorter than declared and a missing ``Content-Length`` are therefore checked here, and a
  gzip file is checked for a cut last member after the iterator finishes (a cut in a member's header block
  otherwise vanishes without a trace).
- Corruption mid-file (a bad WARC header, a gzip data error) raises ``OSError`` and ends the iterator. Reading
  resumes at the next gzip member or ``WARC/1.`` line after the last good record, and the damaged stretch is
  counted once.
- After ``parse_http`` the reported ``content_length`` is the HTTP payload length, still transfer- and
  content-encoded. Bodies are read raw (so the length check means something) and decoded here: chunked
  transfer coding, gzip/deflate/br content coding.

Every record comes out as one :class:`SourceRecord`: a page to parse, an ignored record, or a failure.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import brotli
import pyarrow as pa
import pyarrow.parquet as pq
from fastwarc import ArchiveIterator, WarcRecord, WarcRecordType

from ops.crawl.reasons import (
    BAD_URL_LIST,
    CORRUPT_RECORD,
    DECODE_ERROR,
    HTTP_STATUS,
    MALFORMED_HTTP,
    NOT_A_WARC,
    NOT_HTML,
    NOT_HTTP,
    TRUNCATED_RECORD,
)

MAX_BODY_BYTES = 32 << 20  # bigger "pages" are media or dumps; their first 32 MiB are parsed, like CC's 1 MiB cut
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_GZIP_MAGIC = b"\x1f\x8b\x08"
_WARC_MAGIC = b"WARC/1."
_OTHER_CODECS = (b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18")  # zstd, lz4: read, but not resynchronised
_SCAN_CHUNK = 1 << 20
# A header block without Content-Length: the file ended inside it (truncated) or it is junk (corrupt); which one
# is known only once the next record, or the end of the file, is reached.
_NO_LENGTH = "no_content_length"
_TAIL_CHECK_LIMIT = 64 << 20

URL_COLUMNS = ("url", "URL")
TEXT_COLUMNS = ("caption", "text", "TEXT")


@dataclass(slots=True)
class SourceRecord:
    """One record's outcome. ``status`` is ``page`` (parse ``body``), ``ignored`` or ``failed`` (see ``reason``).

    A page may also carry ``damage``: a failure reason for a record that is still worth parsing (a truncated
    HTML body still holds the images before the cut); it is counted as failed, and its pairs are kept.
    """

    status: str
    reason: str = ""
    kind: str = ""  # "html" or "wat" for pages
    page_url: str = ""
    body: bytes = b""
    charset: str | None = None
    robots: tuple[str, ...] = ()
    damage: str = ""


def _ignored(reason: str) -> SourceRecord:
    return SourceRecord("ignored", reason)


def _failed(reason: str) -> SourceRecord:
    return SourceRecord("failed", reason)


class BodyError(ValueError):
    """An HTTP body whose content coding cannot be undone."""


def source_format(source_rel: str) -> str:
    """``wat``, ``url_list`` or ``warc`` from the file name. Any record type is still handled in any archive."""
    name = source_rel.lower()
    if name.endswith(".parquet"):
        return "url_list"
    if name.endswith((".wat.gz", ".wat")):
        return "wat"
    return "warc"


def dechunk(data: bytes) -> bytes:
    """Undo chunked transfer coding; a body that does not start with a chunk-size line is returned as is.

    A cut body yields the chunks that are complete plus the start of the cut one.
    """
    out = []
    pos = 0
    end = len(data)
    while pos < end:
        eol = data.find(b"\n", pos)
        try:
            size = int(data[pos:eol].split(b";", 1)[0].strip(), 16) if eol >= 0 else -1
        except ValueError:
            size = -1
        if size < 0 and pos == 0:
            return data
        if size <= 0:
            break
        start = eol + 1
        out.append(data[start : start + size])
        pos = start + size
        if data.startswith(b"\r\n", pos):
            pos += 2
        elif data.startswith(b"\n", pos):
            pos += 1
    return b"".join(out)


def decompress(data: bytes, coding: str) -> bytes:
    """Undo a gzip/deflate/br content coding, stopping at :data:`MAX_BODY_BYTES` of output (a bomb guard).

    Crawlers often store the decoded payload but keep the header; a body that already looks like markup is
    returned as it is when decoding fails.
    """
    try:
        if coding in ("gzip", "x-gzip", "deflate"):
            try:
                return zlib.decompressobj(47).decompress(data, MAX_BODY_BYTES)
            except zlib.error:
                if coding != "deflate":
                    raise
                return zlib.decompressobj(-15).decompress(data, MAX_BODY_BYTES)
        if coding == "br":
            return brotli.Decompressor().process(data, output_buffer_limit=MAX_BODY_BYTES)
    except (zlib.error, brotli.error):
        pass
    if data.lstrip()[:1] == b"<":
        return data
    raise BodyError(f"cannot undo content-encoding {coding!r}")


def _target_uri(record: WarcRecord) -> str:
    return (record.headers.get("WARC-Target-URI") or "").strip().strip("<>")


def _looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def read_record(record: WarcRecord) -> SourceRecord:
    """Classify one WARC record and, for a page, read and decode its body."""
    declared = record.headers.get("Content-Length")
    if declared is None or not declared.strip().isdigit():
        return _failed(_NO_LENGTH)
    rtype = record.record_type
    if rtype == WarcRecordType.response:
        return _read_response(record)
    if rtype == WarcRecordType.metadata and "json" in (record.headers.get("Content-Type") or "").lower():
        body = record.reader.read(MAX_BODY_BYTES)
        if len(body) < min(record.content_length, MAX_BODY_BYTES):
            return _failed(TRUNCATED_RECORD)
        return SourceRecord("page", kind="wat", page_url=_target_uri(record), body=body)
    return _ignored(str(rtype) or "unknown")


def _read_response(record: WarcRecord) -> SourceRecord:
    if not record.is_http:
        return _ignored(NOT_HTTP)
    http = record.http_headers
    status = http.status_code
    if status is None:
        body = record.reader.read(MAX_BODY_BYTES)
        return _failed(TRUNCATED_RECORD if len(body) < min(record.content_length, MAX_BODY_BYTES) else MALFORMED_HTTP)
    if status != 200:
        return _ignored(HTTP_STATUS)
    content_type = (record.http_content_type or record.headers.get("WARC-Identified-Payload-Type") or "").lower()
    if content_type and content_type.split(";", 1)[0].strip() not in _HTML_TYPES:
        return _ignored(NOT_HTML)
    raw = record.reader.read(MAX_BODY_BYTES)
    truncated = len(raw) < min(record.content_length, MAX_BODY_BYTES)
    try:
        if "chunked" in (http.get("Transfer-Encoding") or "").lower():
            raw = dechunk(raw)
        coding = (http.get("Content-Encoding") or "").strip().lower()
        if coding and coding != "identity":
            raw = decompress(raw, coding)
    except BodyError:
        return _failed(DECODE_ERROR)
    if not content_type and not _looks_like_html(raw):
        return _ignored(NOT_HTML)
    return SourceRecord(
        "page",
        kind="html",
        page_url=_target_uri(record),
        body=raw,
        charset=record.http_charset,
        robots=tuple(http.get_multiple("X-Robots-Tag")),
        damage=TRUNCATED_RECORD if truncated else "",
    )


def _find(f: BinaryIO, magic: bytes, start: int) -> int | None:
    """Offset of the next ``magic`` at or after ``start``, scanning in chunks."""
    f.seek(start)
    pos, carry = start, b""
    while chunk := f.read(_SCAN_CHUNK):
        buf = carry + chunk
        hit = buf.find(magic)
        if hit >= 0:
            return pos - len(carry) + hit
        carry = buf[-(len(magic) - 1) :]
        pos += len(chunk)
    return None


def _gzip_tail_damage(f: BinaryIO, start: int) -> str:
    """Check the gzip members from ``start`` to the end: "" when all are whole, else the failure reason."""
    f.seek(0, 2)
    size = f.tell()
    if size - start > _TAIL_CHECK_LIMIT:
        return ""
    f.seek(start)
    data = f.read()
    while data:
        member = zlib.decompressobj(31)
        try:
            while not member.eof and data:
                member.decompress(data, _SCAN_CHUNK)
                data = member.unconsumed_tail
        except zlib.error:
            return CORRUPT_RECORD
        if not member.eof:
            return TRUNCATED_RECORD
        data = member.unused_data
    return ""


def _records_from(f: BinaryIO, start: int) -> Iterator[WarcRecord]:
    f.seek(start)
    yield from ArchiveIterator(f, parse_http=True, quirks_mode=True)


def iter_warc(open_source: Callable[[], BinaryIO]) -> Iterator[SourceRecord]:
    """Every record of a WARC/WAT file as a :class:`SourceRecord`; damage is reported, never raised.

    ``open_source`` opens the file for binary reading; it must be seekable, for resynchronising after damage.
    A stretch of unreadable bytes counts as one ``corrupt_record`` failure however many resync attempts it takes;
    a file with no readable record at all is one ``not_a_warc`` failure.
    """
    with open_source() as f:
        head = f.read(8)
        gzip = head[:2] == _GZIP_MAGIC[:2]
        resync_magic = _GZIP_MAGIC if gzip else None if head.startswith(_OTHER_CODECS) else _WARC_MAGIC
        start = 0
        seen = False  # any record read from the file
        damaged = False  # inside a damaged stretch: further failures there are not counted again
        pending = ""  # the failure of the current damaged stretch, reported once it is known to be one
        last = -1
        held = False  # a record without Content-Length, waiting to learn whether anything follows it
        records = _records_from(f, start)
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except Exception:  # FastWARC raises OSError for damage; nothing a file holds may end the shard
                if not damaged or held:
                    damaged, pending, held = True, CORRUPT_RECORD, False
                start = _find(f, resync_magic, max(start, last) + 1) if resync_magic else None
                if start is None:
                    break
                records = _records_from(f, start)
                continue
            last = record.stream_pos
            try:
                item = read_record(record)
            except (OSError, ValueError, UnicodeError):
                item = _failed(CORRUPT_RECORD)
            if held:
                yield _failed(CORRUPT_RECORD)
                held = False
            if pending:
                yield _failed(pending)
                pending = ""
            seen = True
            damaged = item.status == "failed" or bool(item.damage)
            if item.reason == _NO_LENGTH:
                held = True
            else:
                yield item
        if held:
            yield _failed(TRUNCATED_RECORD)
        elif pending or not seen:
            yield _failed(pending if seen else NOT_A_WARC)
        elif gzip and not damaged and last >= 0:
            tail = _gzip_tail_damage(f, last)
            if tail:
                yield _failed(tail)


@dataclass(slots=True)
class UrlBatch:
    """Rows of a URL list: parallel ``urls`` and ``texts`` (None where the cell is null), or a failure."""

    urls: list[str | None]
    texts: list[str | None]
    failure: str = ""


def _strings(column: pa.ChunkedArray) -> list[str | None]:
    values = column.to_pylist()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return values
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else None if v is None else str(v) for v in values]


def iter_url_list(f: BinaryIO) -> Iterator[UrlBatch]:
    """Batches of a parquet URL list (``url``/``URL`` plus ``caption``/``text``/``TEXT``), one per row group.

    An unreadable file, or one without those columns, is one ``bad_url_list`` failure; an unreadable row group
    is one ``corrupt_record`` failure and the rest is read.
    """
    try:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
    except Exception:  # pyarrow raises several types for a file that is not parquet
        yield UrlBatch([], [], BAD_URL_LIST)
        return
    url_col = next((c for c in URL_COLUMNS if c in names), None)
    text_col = next((c for c in TEXT_COLUMNS if c in names), None)
    if url_col is None or text_col is None:
        yield UrlBatch([], [], BAD_URL_LIST)
        return
    for i in range(parquet.num_row_groups):
        try:
            table = parquet.read_row_group(i, columns=[url_col, text_col])
        except Exception:
            yield UrlBatch([], [], CORRUPT_RECORD)
            continue
        yield UrlBatch(_strings(table.column(url_col)), _strings(table.column(text_col)))
