"""The reader never ends early without saying so: WARC files built with generated damage of every kind the issue
names (empty and junk gzip members, junk with and without a newline before the next header, lengths far past
the file or short of the body, bodies split over members, corrupt members, cuts), each checked for the same
invariants: every record the damage did not touch is read whole, every damage is reported, and the books (bytes
and records) balance."""

from __future__ import annotations

import gzip
import io
import random
import re
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.crawl.books import read_problems
from ops.crawl.framing import MAX_BODY_BYTES, WARC_MAGIC, ReadTotals
from ops.crawl.records import SourceRecord, iter_warc
from tests.ops.crawl.crawling import record_books
from tests.ops.crawl.warcs import http_block, raw_record

BENIGN = ("empty_member", "split_member")
DAMAGE = ("junk", "junk_member", "longer", "shorter", "corrupt_member", "cut")
GZIP_ONLY = ("empty_member", "split_member", "junk_member", "corrupt_member")


def page_body(i: int) -> bytes:
    imgs = "".join(f'<img src="/{i}/{k}.png" alt="picture {i} {k}">' for k in range(3))
    return f"<!doctype html><html><body><p>page {i}</p>{imgs}</body></html>".encode()


def url_of(i: int) -> str:
    return f"http://example.com/page/{i}"


def with_length(record: bytes, length: int) -> bytes:
    return re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % length, record, count=1)


@dataclass
class Built:
    data: bytes
    n: int
    damaged: set[int] = field(default_factory=set)  # records the damage may cost (or legitimately swallow)
    damages: int = 0  # damage sites: with any, at least one failure or damaged page must be reported
    swallowed: bool = False  # a length covered later records exactly, which no reader can tell from a body


def build(n: int, compress: bool, ops: list[tuple[str, int, int]]) -> Built:
    """``n`` pages; each op is (kind, record index, a number the op uses), applied at that record."""
    out = Built(b"", n)
    at: dict[int, list[tuple[str, int]]] = {}
    for kind, index, value in ops:
        if compress or kind not in GZIP_ONLY:
            at.setdefault(index % n, []).append((kind, value))
    chunks: list[tuple[bytes, int | None]] = []  # (bytes, the record they hold or None)
    longer: dict[int, int] = {}  # record -> offset of its content end as declared, inside its chunk
    cut: int | None = None
    for i in range(n):
        kinds = dict(at.get(i, []))
        body_len = len(http_block(page_body(i)))
        length = body_len
        if "longer" in kinds:  # past the terminator: a length that ends inside it is just CR/LF, not damage
            length = body_len + 5 + kinds["longer"] % 5000
        elif "shorter" in kinds:
            length = max(0, body_len - 1 - kinds["shorter"] % body_len)
        record = with_length(raw_record(http_block(page_body(i)), uri=url_of(i)), length)
        if length != body_len:
            out.damaged.add(i)
            out.damages += 1
            longer[i] = record.index(b"\r\n\r\n") + 4 + length
        if compress:
            half = len(record) // 2
            parts = [record[:half], record[half:]] if "split_member" in kinds else [record]
            record = b"".join(gzip.compress(p) for p in parts)
            if "corrupt_member" in kinds:
                middle = len(record) // 2
                record = record[:middle] + bytes(b ^ 0xA5 for b in record[middle : middle + 8]) + record[middle + 8 :]
                out.damaged.add(i)
                out.damages += 1
        chunks.append((record, i))
        if "empty_member" in kinds:
            chunks.append((gzip.compress(b""), None))
        if "junk_member" in kinds:
            chunks.append((gzip.compress(junk(kinds["junk_member"])), None))
            out.damages += 1
        if "junk" in kinds:
            chunks.append((junk(kinds["junk"], newline=bool(kinds["junk"] % 2)), None))
            out.damages += 1
        if "cut" in kinds and cut is None:
            cut = kinds["cut"]
    starts = [0]
    for chunk, _ in chunks:
        starts.append(starts[-1] + len(chunk))
    data = b"".join(chunk for chunk, _ in chunks)
    if not compress:  # an uncompressed length that ends where a later record starts cannot be told from a body
        record_starts = [starts[k] for k, (_, i) in enumerate(chunks) if i is not None]
        for k, (_, i) in enumerate(chunks):
            end = starts[k] + longer.get(i, -(10**9)) if i is not None else -1
            clean = [s for s in [*record_starts, len(data)] if s - 4 <= end <= s]
            if i in longer and clean:  # what it swallowed (records, junk, their damage) is its body now
                out.damaged |= set(range(i, n))
                out.swallowed = True
    if cut is not None:
        cut = 1 + cut % (len(data) - 1)
        data = data[:cut]
        hit = next(k for k in range(len(chunks)) if starts[k] < cut <= starts[k + 1]) if cut not in starts else None
        out.damaged |= {i for k, (_, i) in enumerate(chunks) if i is not None and starts[k + 1] > cut}
        if hit is not None:
            out.damages += 1
    out.data = data
    return out


def junk(seed: int, newline: bool = False) -> bytes:
    """Bytes that are neither CR/LF nor a WARC header; with or without a newline before what follows."""
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(1 + seed % 300)).replace(WARC_MAGIC, b"xxxxxxx")
    data = b"J" + data.replace(b"\x1f\x8b", b"\x00\x00")
    return data + (b"\r\n" if newline else b"")


def read(data: bytes) -> tuple[list[SourceRecord], ReadTotals]:
    totals = ReadTotals()
    return list(iter_warc(lambda: io.BytesIO(data), totals)), totals


def check(built: Built) -> None:
    records, totals = read(built.data)
    assert read_problems(record_books(records, totals)) == []
    pages = {r.page_url: r for r in records if r.status == "page"}
    for i in range(built.n):
        if i not in built.damaged:
            page = pages.get(url_of(i))
            assert page is not None, f"record {i} was lost"
            assert page.body == page_body(i) and not page.damage, f"record {i} was read wrong"
    originals = {url_of(i): page_body(i) for i in range(built.n)}
    for url, page in pages.items():
        assert url in originals, "a page that no record held"
        whole = originals[url]
        assert page.body.startswith(whole) or whole.startswith(page.body), "a page with bytes of another"
    reported = sum(1 for r in records if r.status == "failed" or r.damage)
    if built.swallowed:
        return
    if built.damages:
        assert reported >= 1, "damage nobody reported"
    else:
        assert reported == 0, "a failure where nothing was damaged"


OPS = st.lists(
    st.tuples(st.sampled_from(BENIGN + DAMAGE), st.integers(0, 50), st.integers(0, 10_000)), min_size=0, max_size=6
)


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 8), compress=st.booleans(), ops=OPS)
def test_generated_damage_never_loses_a_record_silently(n: int, compress: bool, ops: list) -> None:
    check(build(n, compress, ops))


@pytest.mark.parametrize("compress", [True, False])
def test_benign_oddities_lose_nothing_and_report_nothing(compress: bool) -> None:
    """Empty members and records split over two members are legal gzip: every page, no failure."""
    built = build(6, compress, [("empty_member", 0, 0), ("split_member", 2, 0), ("empty_member", 5, 0)])
    records, totals = read(built.data)
    assert Counter(r.status for r in records) == Counter({"page": 6})
    assert read_problems(record_books(records, totals)) == []


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("extra", [5, 999, 10**12])
def test_a_length_past_the_record_cuts_it_at_the_next_header(compress: bool, extra: int) -> None:
    """(A length that ends inside the record's CR/LF terminator is no damage: it covers only separators.)"""
    records = [raw_record(http_block(page_body(i)), uri=url_of(i)) for i in range(5)]
    body_len = len(http_block(page_body(2)))
    records[2] = with_length(records[2], body_len + extra)
    data = b"".join(gzip.compress(r) for r in records) if compress else b"".join(records)
    got, totals = read(data)
    assert [(r.page_url, r.damage) for r in got] == [
        (url_of(0), ""),
        (url_of(1), ""),
        (url_of(2), "length_mismatch"),
        (url_of(3), ""),
        (url_of(4), ""),
    ]
    assert got[2].body.startswith(page_body(2))
    assert read_problems(record_books(got, totals)) == []


def test_junk_with_no_newline_before_the_next_header_is_one_skipped_span() -> None:
    records = [raw_record(http_block(page_body(i)), uri=url_of(i)) for i in range(3)]
    data = records[0] + b"junkjunk" + records[1] + records[2]
    got, totals = read(data)
    assert [(r.status, r.reason or r.page_url) for r in got] == [
        ("page", url_of(0)),
        ("failed", "corrupt_record"),
        ("page", url_of(1)),
        ("page", url_of(2)),
    ]
    assert (totals.skipped_spans, totals.skipped_bytes) == (1, len(b"junkjunk"))


def test_a_page_past_32_mib_is_read_up_to_the_limit_and_reported() -> None:
    """A body bigger than the limit keeps its first 32 MiB of pairs but is never counted as used."""
    imgs = b"".join(b'<img src="/%d.png" alt="big %d">' % (k, k) for k in range(1000))
    body = b"<html><body>" + imgs + b"<p>" + b"x" * MAX_BODY_BYTES + b"</p>" + imgs + b"</body></html>"
    big = raw_record(http_block(body), uri=url_of(1))
    for data in (
        raw_record(http_block(page_body(0)), uri=url_of(0)) + big + raw_record(http_block(page_body(2)), uri=url_of(2)),
        gzip.compress(raw_record(http_block(page_body(0)), uri=url_of(0)), 1)
        + gzip.compress(big, 1)
        + gzip.compress(raw_record(http_block(page_body(2)), uri=url_of(2)), 1),
    ):
        got, totals = read(data)
        assert [(r.page_url, r.damage) for r in got] == [
            (url_of(0), ""),
            (url_of(1), "oversized_record"),
            (url_of(2), ""),
        ]
        assert len(got[1].body) == MAX_BODY_BYTES
        assert read_problems(record_books(got, totals)) == []


def test_a_gzip_bomb_member_is_cut_and_reported() -> None:
    """A member that inflates far past any page (300 MiB from a few hundred KiB) is skipped with its reason."""
    bomb = gzip.compress(raw_record(b"x" * (300 << 20), "resource", content_type="text/plain"), 9)
    data = gzip.compress(raw_record(http_block(page_body(0)), uri=url_of(0))) + bomb
    data += gzip.compress(raw_record(http_block(page_body(1)), uri=url_of(1)))
    got, totals = read(data)
    assert [(r.status, r.reason or r.page_url) for r in got] == [
        ("page", url_of(0)),
        ("failed", "oversized_record"),
        ("page", url_of(1)),
    ]
    assert totals.bytes_read == totals.source_bytes == len(data)
