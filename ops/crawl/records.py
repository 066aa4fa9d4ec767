"""Read crawl source files robustly: WARC and WAT archives record by record, URL-list parquet row group by row group.

A crawl shard is hours of someone else's download, so one damaged record must cost that record and nothing
else, and no record may go missing without a reason. :mod:`ops.crawl.framing` finds the records (and the spans
of bytes that are none) itself, inflating gzip members one at a time; FastWARC then parses each record, and this
module adds what it leaves to the caller:

- A frame's damage (cut by the end of the file, a length that lied, a body past 32 MiB) is carried to the
  record; a page that is damaged but readable is still parsed, and counted as failed.
- After ``parse_http`` the reported ``content_length`` is the HTTP payload length, still transfer- and
  content-encoded. Bodies are read raw and decoded here: chunked transfer coding, gzip/deflate/br content
  coding, each stopping at :data:`MAX_BODY_BYTES` of output (a body that would go on is ``oversized_record``).

Every record and every skipped span comes out as one :class:`SourceRecord`: a page to parse, an ignored record,
or a failure.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import brotli
import pyarrow as pa
import pyarrow.parquet as pq
from fastwarc import ArchiveIterator, WarcRecord, WarcRecordType

from ops.crawl.framing import MAX_BODY_BYTES, Frame, Framer, ReadTotals
from ops.crawl.reasons import (
    BAD_URL_LIST,
    CORRUPT_RECORD,
    DECODE_ERROR,
    HTTP_STATUS,
    MALFORMED_HTTP,
    NOT_A_WARC,
    NOT_HTML,
    NOT_HTTP,
    OVERSIZED_RECORD,
)

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_SOURCE_UID_CHARS = 256  # a longer "uid" is no identifier: it is left out and counted
MAX_CARRIED_CHARS = 1000  # a carried text value (a licence, a tag) is cut here, so a row cannot smuggle megabytes


@dataclass(frozen=True)
class UrlListConfig:
    """Which columns of a URL list mean what: the first name present wins. The defaults read LAION's parquet
    (``URL``, ``TEXT``, ``WIDTH``, ``HEIGHT``, ``LICENSE``, ``NSFW``) and DataComp's (``uid``, ``url``, ``text``,
    ``original_width``, ``original_height``, ``sha256``) alike.

    ``carry`` columns, where present, travel as a JSON object (``source_fields``) from the crawl table into each
    dataset sample's metadata; the list's own uid (``source_uid``) travels the same way, beside ours, which stays
    the hash of (URL, text) that every stage keys on. A ``sha256`` of the image, where a row has one, is checked
    at download (``hash_mismatch``)."""

    url: tuple[str, ...] = ("url", "URL")
    text: tuple[str, ...] = ("caption", "text", "TEXT")
    uid: tuple[str, ...] = ("uid", "key", "SAMPLE_ID")
    sha256: tuple[str, ...] = ("sha256", "SHA256")
    carry: tuple[str, ...] = field(
        default=(
            "width",
            "height",
            "original_width",
            "original_height",
            "WIDTH",
            "HEIGHT",
            "license",
            "LICENSE",
            "nsfw",
            "NSFW",
            "punsafe",
            "pwatermark",
            "similarity",
        )
    )


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


def decompress(data: bytes, coding: str) -> tuple[bytes, bool]:
    """Undo a gzip/deflate/br content coding, stopping at :data:`MAX_BODY_BYTES` of output (a bomb guard).
    Returns the bytes and whether the output went on past the limit.

    Crawlers often store the decoded payload but keep the header; a body that already looks like markup is
    returned as it is when decoding fails.
    """
    try:
        if coding in ("gzip", "x-gzip", "deflate"):
            try:
                inflater = zlib.decompressobj(47)
                out = inflater.decompress(data, MAX_BODY_BYTES)
            except zlib.error:
                if coding != "deflate":
                    raise
                inflater = zlib.decompressobj(-15)
                out = inflater.decompress(data, MAX_BODY_BYTES)
            return out, bool(inflater.unconsumed_tail)
        if coding == "br":
            decoder = brotli.Decompressor()
            out = decoder.process(data, output_buffer_limit=MAX_BODY_BYTES)  # a soft limit: it may overshoot
            return out[:MAX_BODY_BYTES], len(out) > MAX_BODY_BYTES or not decoder.can_accept_more_data()
    except (zlib.error, brotli.error):
        pass
    if data.lstrip()[:1] == b"<":
        return data, False
    raise BodyError(f"cannot undo content-encoding {coding!r}")


def _target_uri(record: WarcRecord) -> str:
    return (record.headers.get("WARC-Target-URI") or "").strip().strip("<>")


def _looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def _read_body(record: WarcRecord) -> tuple[bytes, bool]:
    """The first :data:`MAX_BODY_BYTES` of the body, and whether there was more. The frame already bounds the body
    (:data:`ops.crawl.framing.MAX_CONTENT_BYTES`), so it is read whole: FastWARC's ``read(n)`` allocates ``n``
    bytes first, which cost about 90 µs a record at 32 MiB."""
    body = record.reader.read()
    return (body[:MAX_BODY_BYTES], True) if len(body) > MAX_BODY_BYTES else (body, False)


def read_frame(frame: Frame) -> SourceRecord:
    """Classify one frame: a skipped span is a failure; a record is parsed, its frame's damage carried along.

    Damage turns an ignored record into a failure (it may have been a page), and a page into a damaged page; the
    bytes of a corrupt record are not trusted at all.
    """
    if not frame.record or frame.reason == CORRUPT_RECORD:
        return _failed(frame.reason)
    try:
        records = ArchiveIterator(io.BytesIO(frame.data), parse_http=True, quirks_mode=True, stream_detect=False)
        record = next(iter(records), None)
        item = _failed(CORRUPT_RECORD) if record is None else read_record(record)
    except (OSError, ValueError, UnicodeError):  # FastWARC refuses the header block, or the HTTP message
        item = _failed(frame.reason or CORRUPT_RECORD)
    if frame.reason:
        if item.status == "page":
            item.damage = item.damage or frame.reason
        elif item.status == "ignored" or item.reason == MALFORMED_HTTP:
            item = _failed(frame.reason)
    return item


def read_record(record: WarcRecord) -> SourceRecord:
    """Classify one parsed WARC record and, for a page, read and decode its body."""
    rtype = record.record_type
    if rtype == WarcRecordType.response:
        return _read_response(record)
    if rtype == WarcRecordType.metadata and "json" in (record.headers.get("Content-Type") or "").lower():
        body, more = _read_body(record)
        if more:
            return _failed(OVERSIZED_RECORD)
        return SourceRecord("page", kind="wat", page_url=_target_uri(record), body=body)
    return _ignored(str(rtype) or "unknown")


def _read_response(record: WarcRecord) -> SourceRecord:
    if not record.is_http:
        return _ignored(NOT_HTTP)
    http = record.http_headers
    status = http.status_code
    if status is None:
        return _failed(MALFORMED_HTTP)
    if status != 200:
        return _ignored(HTTP_STATUS)
    content_type = (record.http_content_type or record.headers.get("WARC-Identified-Payload-Type") or "").lower()
    if content_type and content_type.split(";", 1)[0].strip() not in _HTML_TYPES:
        return _ignored(NOT_HTML)
    raw, more = _read_body(record)
    try:
        if "chunked" in (http.get("Transfer-Encoding") or "").lower():
            raw = dechunk(raw)
        coding = (http.get("Content-Encoding") or "").strip().lower()
        if coding and coding != "identity":
            raw, inflated_more = decompress(raw, coding)
            more = more or inflated_more
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
        damage=OVERSIZED_RECORD if more else "",
    )


def iter_warc(open_source: Callable[[], BinaryIO], totals: ReadTotals | None = None) -> Iterator[SourceRecord]:
    """Every record and skipped span of a WARC/WAT file as a :class:`SourceRecord`; damage is reported, never
    raised. ``totals``, when given, is filled with what the read covered (see :class:`ReadTotals`).

    ``open_source`` opens the file for binary reading; it must be seekable. A file in which no record could be
    found at all is one ``not_a_warc`` failure.
    """
    with open_source() as f:
        framer = Framer(f)
        leading: list[SourceRecord] = []  # skipped spans before the first record: the file may be no WARC at all
        seen = False
        for frame in framer.frames():
            item = read_frame(frame)
            if seen:
                yield item
            elif frame.record:
                seen = True
                yield from leading
                yield item
            else:
                leading.append(item)
        if not seen:
            yield _failed(NOT_A_WARC)
        if totals is not None:
            for name in ReadTotals.__slots__:
                setattr(totals, name, getattr(framer.totals, name))


@dataclass(slots=True)
class UrlBatch:
    """Rows of a URL list: parallel ``urls`` and ``texts`` (None where the cell is null) and ``bad`` (the row held
    bytes that are not UTF-8; its strings are shown with replacement characters), the list's own ``uids``, the
    image ``sha256`` each row claims (lower-case hex; None where there is none or it is not a SHA-256, counted in
    ``bad_sha256``) and the carried ``fields`` (a JSON object, or None); or a failure covering ``rows`` rows of a
    row group that could not be read. A uid past :data:`MAX_SOURCE_UID_CHARS` is None, counted in ``bad_uid``."""

    urls: list[str | None]
    texts: list[str | None]
    bad: list[bool]
    failure: str = ""
    rows: int = 0
    uids: list[str | None] = field(default_factory=list)
    sha256: list[str | None] = field(default_factory=list)
    fields: list[str | None] = field(default_factory=list)
    bad_sha256: int = 0
    bad_uid: int = 0


def _strings(column: pa.ChunkedArray) -> tuple[list[str | None], list[bool]]:
    """The column as Python strings, and which ones were not valid UTF-8.

    A parquet file written elsewhere can hold any bytes in a string column, and converting one invalid value
    raises for the whole column, so the values are taken as bytes and decoded one by one.
    """
    kind = column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)):
        return [None if v is None else str(v) for v in column.to_pylist()], [False] * len(column)
    if not pa.types.is_binary(kind):
        try:
            return column.to_pylist(), [False] * len(column)
        except UnicodeDecodeError:
            pass
    values: list[str | None] = []
    bad: list[bool] = []
    for raw in column.cast(pa.large_binary()).to_pylist():
        if raw is None:
            values.append(None)
            bad.append(False)
            continue
        try:
            values.append(raw.decode("utf-8"))
            bad.append(False)
        except UnicodeDecodeError:
            values.append(raw.decode("utf-8", "replace"))
            bad.append(True)
    return values, bad


def url_list_rows(f: BinaryIO) -> int:
    """The row count a URL list's footer declares (0 when the file is not readable parquet)."""
    try:
        return pq.ParquetFile(f).metadata.num_rows
    except Exception:  # pyarrow raises several types for a file that is not parquet
        return 0


def _hashes(column: pa.ChunkedArray | None, n: int) -> tuple[list[str | None], int]:
    """The SHA-256 claimed per row, lower-cased; a value that is not 64 hex digits counts as bad and as none."""
    if column is None:
        return [None] * n, 0
    values, _ = _strings(column)
    out: list[str | None] = []
    bad = 0
    for value in values:
        digest = value.strip().lower() if value else None
        if digest is not None and not _SHA256.match(digest):
            bad += 1
            digest = None
        out.append(digest)
    return out, bad


def _carried(table: pa.Table, names: list[str]) -> list[str | None]:
    """The carried columns of each row as a JSON object (null cells left out; None when nothing is left)."""
    if not names:
        return [None] * table.num_rows
    columns = [table.column(name).to_pylist() for name in names]
    out: list[str | None] = []
    for row in zip(*columns, strict=True):
        found = {
            name: value[:MAX_CARRIED_CHARS] if isinstance(value, str) else value
            for name, value in zip(names, row, strict=True)
            if value is not None
        }
        out.append(json.dumps(found, sort_keys=True, default=str, ensure_ascii=False) if found else None)
    return out


def iter_url_list(f: BinaryIO, config: UrlListConfig | None = None) -> Iterator[UrlBatch]:
    """Batches of a parquet URL list, one per row group, its columns found by :class:`UrlListConfig`.

    An unreadable file, or one without a URL and a text column, is one ``bad_url_list`` failure; an unreadable row
    group is one ``corrupt_record`` failure and the rest is read.
    """
    config = config or UrlListConfig()
    try:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
    except Exception:  # pyarrow raises several types for a file that is not parquet
        yield UrlBatch([], [], [], BAD_URL_LIST)
        return
    url_col = next((c for c in config.url if c in names), None)
    text_col = next((c for c in config.text if c in names), None)
    uid_col = next((c for c in config.uid if c in names), None)
    sha_col = next((c for c in config.sha256 if c in names), None)
    carry = [c for c in config.carry if c in names and c not in (url_col, text_col, uid_col, sha_col)]
    if url_col is None or text_col is None:
        yield UrlBatch([], [], [], BAD_URL_LIST, parquet.metadata.num_rows)
        return
    wanted = list(dict.fromkeys(c for c in (url_col, text_col, uid_col, sha_col, *carry) if c is not None))
    for i in range(parquet.num_row_groups):
        try:
            table = parquet.read_row_group(i, columns=wanted)
            urls, bad_urls = _strings(table.column(url_col))
            texts, bad_texts = _strings(table.column(text_col))
            uids = _strings(table.column(uid_col))[0] if uid_col else [None] * table.num_rows
            long_uids = sum(1 for u in uids if u is not None and len(u) > MAX_SOURCE_UID_CHARS)
            uids = [None if u is not None and len(u) > MAX_SOURCE_UID_CHARS else u for u in uids]
            hashes, bad_hashes = _hashes(table.column(sha_col) if sha_col else None, table.num_rows)
            fields = _carried(table, carry)
        except Exception:
            yield UrlBatch([], [], [], CORRUPT_RECORD, parquet.metadata.row_group(i).num_rows)
            continue
        bad = [a or b for a, b in zip(bad_urls, bad_texts, strict=True)]
        yield UrlBatch(
            urls, texts, bad, uids=uids, sha256=hashes, fields=fields, bad_sha256=bad_hashes, bad_uid=long_uids
        )
