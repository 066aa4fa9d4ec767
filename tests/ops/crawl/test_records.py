"""Reading source files robustly: damage is counted, never raised, and the rest of the file is still read."""

from __future__ import annotations

import gzip
import io
import random
import zlib
from collections import Counter
from pathlib import Path

import brotli
import pytest

from ops.crawl.framing import MAX_BODY_BYTES
from ops.crawl.records import SourceRecord, dechunk, decompress, iter_warc
from tests.ops.crawl.warcs import FIXTURES, Page, gzip_members, http_block, raw_record, write_warc

PAGE_HTML = b'<html><body><img src="/a.png" alt="a picture"></body></html>'


def _noise(n: int) -> bytes:
    """Seeded random bytes that never start like markup (a leading ``<`` would make them pass as a page)."""
    return b"\x00" + random.Random(n).randbytes(n - 1)


def records_of(data: bytes) -> list[SourceRecord]:
    return list(iter_warc(lambda: io.BytesIO(data)))


def outcome(records: list[SourceRecord]) -> Counter[str]:
    return Counter(f"{r.status}:{r.reason}" + (f"+{r.damage}" if r.damage else "") for r in records)


def test_fixture_records_are_classified() -> None:
    records = list(iter_warc(lambda: (FIXTURES / "warc" / "whirlwind.warc.gz").open("rb")))
    assert outcome(records) == Counter({"ignored:warcinfo": 1, "ignored:request": 1, "page:": 1, "ignored:metadata": 1})
    page = next(r for r in records if r.status == "page")
    assert page.kind == "html"
    assert page.page_url == "https://an.wikipedia.org/wiki/Escopete"
    assert page.charset == "utf-8"
    assert page.body.rstrip().endswith(b"</html>")


def test_clipped_fixture_yields_the_partial_page_and_a_truncation() -> None:
    """FastWARC hands out the cut record without an error; the short body is what tells."""
    records = list(iter_warc(lambda: (FIXTURES / "warc" / "resiliparse-clipped.warc.gz").open("rb")))
    assert len(records) == 1
    (page,) = records
    assert page.status == "page"
    assert page.damage == "truncated_record"
    assert page.page_url.startswith("http://www.houstonpress.com/")
    assert b"<img" in page.body


@pytest.mark.parametrize(
    "data",
    [
        b"",
        _noise(4096),
        b"hello, this is not a web archive\n" * 50,
        gzip.compress(b"hello, this is not a web archive\n" * 50),
        b"<html><body><img src=a.png alt=x></body></html>",
        b"PK\x03\x04" + _noise(500),
    ],
    ids=["empty", "random", "text", "gzipped-text", "html", "zip"],
)
def test_a_file_that_is_not_a_warc_is_one_failure(data: bytes) -> None:
    assert outcome(records_of(data)) == Counter({"failed:not_a_warc": 1})


def _fixture_members() -> tuple[bytes, list[int]]:
    """The resiliparse fixture and the offsets of its gzip members."""
    data = (FIXTURES / "warc" / "resiliparse-commoncrawl.warc.gz").read_bytes()
    offsets = []
    pos = 0
    while pos < len(data):
        offsets.append(pos)
        member = zlib.decompressobj(31)
        member.decompress(data[pos:])
        pos = len(data) - len(member.unused_data)
    return data, offsets


def test_corrupt_member_mid_file_costs_one_record_and_reading_resumes() -> None:
    data, offsets = _fixture_members()
    clean = outcome(records_of(data))
    # garble the middle of the 6th member (a response record): a gzip data error there
    start, end = offsets[5], offsets[6]
    middle = (start + end) // 2
    broken = data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64]) + data[middle + 64 :]
    damaged = outcome(records_of(broken))
    assert damaged["failed:corrupt_record"] == 1
    assert damaged["page:"] == clean["page:"] - 1
    assert sum(damaged.values()) == sum(clean.values())


def test_garbage_between_records_is_skipped() -> None:
    data, offsets = _fixture_members()
    junk = b"\x00garbage that is neither gzip nor WARC\x00" * 20
    broken = data[: offsets[10]] + junk + data[offsets[10] :]
    damaged = outcome(records_of(broken))
    assert damaged["failed:corrupt_record"] == 1
    assert damaged["page:"] == 16


def test_uncompressed_warc_with_garbage_resumes_at_the_next_record() -> None:
    good = raw_record(http_block(PAGE_HTML))
    data = good + b"WARC/1.0\r\nthis is : not\r\na header block at all\r\n\r\n" + good + good
    result = outcome(records_of(data))
    assert result["page:"] == 3
    assert result["failed:corrupt_record"] <= 1
    assert sum(result.values()) == 3 + result["failed:corrupt_record"]


def test_gzip_member_cut_in_its_header_block_is_reported(tmp_path: Path) -> None:
    """FastWARC silently drops a last member cut before its headers end; the tail check finds it."""
    data = gzip_members([raw_record(http_block(PAGE_HTML)), raw_record(http_block(PAGE_HTML))])
    first_len = len(gzip.compress(raw_record(http_block(PAGE_HTML))))
    for cut in (first_len + 12, first_len + 40, len(data) - 30):
        result = outcome(records_of(data[:cut]))
        assert result["page:"] == 1, cut
        assert result["failed:truncated_record"] + result["page:+truncated_record"] == 1, (cut, result)


def test_uncompressed_record_cut_in_headers_or_body() -> None:
    record = raw_record(http_block(PAGE_HTML + b" " * 500))
    assert outcome(records_of(record[:60])) == Counter({"failed:truncated_record": 1})
    assert outcome(records_of(record[:220])) == Counter({"failed:truncated_record": 1})
    assert outcome(records_of(record[:-300])) == Counter({"page:+truncated_record": 1})


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"this is not an HTTP message", "failed:malformed_http"),
        (http_block(PAGE_HTML, status="404 Not Found"), "ignored:http_status"),
        (http_block(PAGE_HTML, status="301 Moved Permanently"), "ignored:http_status"),
        (http_block(b"\x89PNG...", headers="Content-Type: image/png"), "ignored:not_html"),
        (http_block(b"<!doctype html><img src=a alt=b>", headers="Server: x"), "page:"),
        (http_block(b"just text", headers="Server: x"), "ignored:not_html"),
        (http_block(PAGE_HTML, headers="Content-Type: application/xhtml+xml"), "page:"),
        (http_block(PAGE_HTML, headers="Content-Type: TEXT/HTML; charset=UTF-8"), "page:"),
        (http_block(PAGE_HTML, headers="Content-Type: text/html\r\nContent-Encoding: x-unknown"), "page:"),
        (
            http_block(_noise(300), headers="Content-Type: text/html\r\nContent-Encoding: gzip"),
            "failed:decode_error",
        ),
    ],
)
def test_response_records(block: bytes, expected: str) -> None:
    assert outcome(records_of(raw_record(block))) == Counter({expected: 1})


def test_lf_only_http_headers_are_read() -> None:
    block = b"HTTP/1.1 200 OK\nContent-Type: text/html\n\n" + PAGE_HTML
    (record,) = records_of(raw_record(block))
    assert record.status == "page"
    assert record.body == PAGE_HTML


def test_non_response_records_are_ignored_by_type() -> None:
    data = b"".join(
        [
            raw_record(b"software: x\r\n", "warcinfo", content_type="application/warc-fields"),
            raw_record(
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "request", content_type="application/http; msgtype=request"
            ),
            raw_record(b"fetchTimeMs: 1\r\n", "metadata", content_type="application/warc-fields"),
            raw_record(b"hello", "resource", content_type="text/plain"),
            raw_record(http_block(PAGE_HTML), "response", content_type="text/plain"),
        ]
    )
    assert outcome(records_of(data)) == Counter(
        {
            "ignored:warcinfo": 1,
            "ignored:request": 1,
            "ignored:metadata": 1,
            "ignored:resource": 1,
            "ignored:not_http": 1,
        }
    )


def test_chunked_and_compressed_bodies_are_decoded(tmp_path: Path) -> None:
    html = b"<html><body>" + b"".join(b'<img src="/%d.png" alt="picture %d">' % (i, i) for i in range(50)) + b"</body>"
    gz = gzip.compress(html)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(gz[i : i + 100]), gz[i : i + 100]) for i in range(0, len(gz), 100))
    chunked += b"0\r\n\r\n"
    headers = [("Content-Type", "text/html"), ("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")]
    path = write_warc(tmp_path / "t.warc.gz", [Page("http://e.com/", chunked, headers)])
    (page,) = [r for r in iter_warc(lambda: path.open("rb")) if r.status == "page"]
    assert page.body == html
    assert not page.damage


def test_dechunk() -> None:
    assert dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert dechunk(b"5\nhello\n0\n\n") == b"hello"
    assert dechunk(b"<html>not chunked</html>") == b"<html>not chunked</html>"
    assert dechunk(b"5\r\nhello\r\n10\r\nshort") == b"helloshort"


def test_decompress() -> None:
    data = b"<html>" + b"x" * 1000 + b"</html>"
    assert decompress(gzip.compress(data), "gzip") == (data, False)
    assert decompress(zlib.compress(data), "deflate") == (data, False)
    raw_deflate = zlib.compressobj(wbits=-15)
    assert decompress(raw_deflate.compress(data) + raw_deflate.flush(), "deflate") == (data, False)
    assert decompress(brotli.compress(data), "br") == (data, False)
    assert decompress(data, "gzip") == (data, False)  # the header lied: the body is already decoded
    cut, more = decompress(gzip.compress(data)[:200], "gzip")
    assert data.startswith(cut) and not more


def test_decompress_stops_at_the_body_limit_and_says_so() -> None:
    """A small coded body that inflates past 32 MiB is cut there, and the cut is reported (gzip and brotli)."""
    data = b"<html>" + b"<p>x</p>" * (5 << 20) + b"</html>"
    for coded, coding in ((gzip.compress(data), "gzip"), (brotli.compress(data, quality=1), "br")):
        out, more = decompress(coded, coding)
        assert len(out) == MAX_BODY_BYTES and more, coding
        assert data.startswith(out)


def test_wat_metadata_records_are_pages() -> None:
    body = b'{"Envelope": {}}'
    record = raw_record(body, "metadata", uri="<http://e.com/>", content_type="application/json")
    (item,) = records_of(record)
    assert (item.status, item.kind, item.page_url, item.body) == ("page", "wat", "http://e.com/", body)
