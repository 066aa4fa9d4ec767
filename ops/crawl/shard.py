"""The crawl op: one source file in, ``crawl/<shard>.parquet`` out, every candidate pair a row.

Every ``<img>`` of every usable page (or image link of a WAT record, or row of a URL list) becomes a row, kept or
dropped with one reason from :mod:`ops.crawl.reasons`, so "what happened to this pair" always has an answer and
rows in = kept + dropped holds by construction. Source records are accounted for the same way: every record is
used, ignored (fine, but no page: requests, redirects, images) or failed (damaged), and the report says which.

The table is built column-wise and language identification runs once per distinct kept text at the end,
which keeps per-pair work to a URL resolution and a hash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa

from infra.lake import Lake
from infra.remote import RemoteConfig, RemoteFile, is_remote
from ops import graph
from ops.crawl import reasons as R
from ops.crawl.books import read_problems
from ops.crawl.charset import CharsetError, NoMarkupError, decode_page
from ops.crawl.framing import ReadTotals
from ops.crawl.html import Candidate, extract_html, normalize_text
from ops.crawl.lang import identify
from ops.crawl.records import SourceRecord, UrlListConfig, iter_url_list, iter_warc, source_format, url_list_rows
from ops.crawl.urls import UrlPolicy, clean_src
from ops.crawl.wat import WatError, parse_wat
from ops.optout import opts_out
from ops.report import StageReport
from ops.stage import Decisions, run_shard_stage
from ops.uid import pair_uid

SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("text_source", pa.string()),
        ("page_url", pa.string()),
        ("lang", pa.string()),
        ("lang_prob", pa.float32()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
        ("position", pa.int64()),
        ("source_uid", pa.string()),  # a URL list's own uid (DataComp's), kept beside ours
        ("expected_sha256", pa.string()),  # the image's SHA-256 a URL list claims, checked at download
        ("source_fields", pa.string()),  # a URL list's carried columns (size, license, NSFW) as a JSON object
    ]
)


@dataclass(frozen=True)
class CrawlConfig:
    """How strict the crawl is. The defaults are the production policy."""

    allow_networks: tuple[str, ...] = ()  # CIDRs allowed despite the private/loopback rule, e.g. ("127.0.0.1/32",)
    honour_opt_out: bool = True
    max_text_chars: int = 2000
    max_url_chars: int = 2048
    max_images_per_page: int = 1000  # candidates past these are page_image_cap rows ...
    max_rows_per_page: int = 2000  # ... up to these; image tags past them are counted (images_unlisted), not rows
    detect_language: bool = True
    remote: RemoteConfig = field(default_factory=RemoteConfig)  # how sources by reference (URLs) are read
    url_list: UrlListConfig = field(default_factory=UrlListConfig)  # which URL-list columns mean what


class _PairTable:
    """Accumulates the shard's rows column by column and decides each pair as it arrives."""

    def __init__(self, config: CrawlConfig) -> None:
        self.config = config
        self._policy = UrlPolicy(config.allow_networks, config.max_url_chars)
        self._seen: set[str] = set()
        self.uid: list[str] = []
        self.url: list[str] = []
        self.text: list[str] = []
        self.source: list[str] = []
        self.page_url: list[str] = []
        self.reason: list[str] = []
        self.source_uid: list[str | None] = []
        self.expected_sha256: list[str | None] = []
        self.source_fields: list[str | None] = []

    def __len__(self) -> int:
        return len(self.uid)

    def add_page(self, page_url: str, base_href: str | None, images: list[Candidate], opt_out: bool) -> None:
        base = self._policy.base_for(page_url, base_href)
        opt_out = opt_out and self.config.honour_opt_out
        cap = self.config.max_images_per_page
        for i, (src, text, source) in enumerate(images):
            self.add(src, text, source, page_url, base, opt_out, i >= cap)

    def add(
        self,
        src: str,
        text: str,
        source: str,
        page_url: str,
        base: str,
        opt_out: bool = False,
        capped: bool = False,
        invalid: bool = False,
        listed: tuple[str | None, str | None, str | None] = (None, None, None),
    ) -> None:
        """Decide one candidate; the checks run in the precedence order of :data:`reasons.PAIR_REASONS`.
        ``listed`` is what a URL list says of the row: its uid, the image's SHA-256 and the carried fields."""
        url, url_reason = self._policy.resolve(src, base) if src else ("", R.NO_SRC)
        uid = pair_uid(url, text)
        if invalid:
            reason = R.INVALID_UTF8
        elif not text:
            reason = R.NO_TEXT
        elif not src:
            reason = R.NO_SRC
        elif opt_out:
            reason = R.OPT_OUT
        elif capped:
            reason = R.PAGE_IMAGE_CAP
        elif len(text) > self.config.max_text_chars:
            reason = R.TEXT_TOO_LONG
        elif url_reason:
            reason = url_reason
        elif uid in self._seen:
            reason = R.DUPLICATE_PAIR
        else:
            self._seen.add(uid)
            reason = ""
        text_cap, url_cap = self.config.max_text_chars, self.config.max_url_chars
        if len(text) > text_cap or len(url) > url_cap:  # dropped already: stored cut, so a page cannot multiply them
            text, url = text[:text_cap], url[:url_cap]
            uid = pair_uid(url, text)
        page_url = page_url[:url_cap]
        self.uid.append(uid)
        self.url.append(url)
        self.text.append(text)
        self.source.append(source)
        self.page_url.append(page_url)
        self.reason.append(reason)
        self.source_uid.append(listed[0])
        self.expected_sha256.append(listed[1])
        self.source_fields.append(listed[2])

    def to_table(self) -> pa.Table:
        kept = [not r for r in self.reason]
        n = len(kept)
        langs = [""] * n
        probs = [0.0] * n
        if self.config.detect_language:
            found = identify(t for t, k in zip(self.text, kept, strict=True) if k)
            for i in range(n):
                if kept[i]:
                    langs[i], probs[i] = found[self.text[i]]
        columns = [
            self.uid,
            self.url,
            self.text,
            self.source,
            self.page_url,
            langs,
            probs,
            kept,
            self.reason,
            range(n),
            self.source_uid,
            self.expected_sha256,
            self.source_fields,
        ]
        return pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(columns, SCHEMA, strict=True)], schema=SCHEMA
        )


class _RecordCounts:
    """Record-level accounting: records in = used + ignored + failed."""

    def __init__(self) -> None:
        self.records_in = 0
        self.used = 0
        self.ignored: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.pages = 0
        self.pages_opted_out = 0
        self.unsupported_charsets = 0  # pages whose declared charset no browser knows: decoded by the fallback
        self.pages_row_capped = 0
        self.images_unlisted = 0  # image tags past the row cap of their page: counted here, not rows
        self.read: dict[str, int] = {}  # what the read of the source covered, checked by ops.crawl.books

    def to_extra(self, pairs: int) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "records_in": self.records_in,
            "records_used": self.used,
            "records_ignored": sum(self.ignored.values()),
            "records_failed": sum(self.failed.values()),
            "pages": self.pages,
            "pages_opted_out": self.pages_opted_out,
            "pages_unsupported_charset": self.unsupported_charsets,
            "pages_row_capped": self.pages_row_capped,
            "images_unlisted": self.images_unlisted,
            "pairs_per_page": round(pairs / self.pages, 3) if self.pages else 0.0,
        }
        extra.update({f"records_ignored.{k}": v for k, v in sorted(self.ignored.items())})
        extra.update({f"records_failed.{k}": v for k, v in sorted(self.failed.items())})
        extra.update(self.read)
        return extra


def _take_record(record: SourceRecord, pairs: _PairTable, counts: _RecordCounts) -> None:
    """Account for one source record and add its page's candidates. A bad page never raises."""
    counts.records_in += 1
    if record.status == "ignored":
        counts.ignored[record.reason] += 1
        return
    if record.status == "failed":
        counts.failed[record.reason] += 1
        return
    page_url = record.page_url
    try:
        max_rows = pairs.config.max_rows_per_page
        if record.kind == "wat":
            wat = parse_wat(record.body, max_rows)
            if wat is None:
                counts.ignored[R.NO_HTML_METADATA] += 1
                return
            if wat.status is not None and wat.status != 200:
                counts.ignored[R.HTTP_STATUS] += 1
                return
            page, page_url = wat.page, wat.page_url or page_url
        else:
            decoded = decode_page(record.body, record.charset)
            counts.unsupported_charsets += decoded.unsupported_label is not None
            page = extract_html(decoded.text, max_rows)
            page.opt_out = page.opt_out or opts_out(record.robots)
    except NoMarkupError:
        counts.ignored[R.NO_MARKUP] += 1
        return
    except CharsetError:
        counts.failed[R.DECODE_ERROR] += 1
        return
    except WatError:
        counts.failed[R.MALFORMED_JSON] += 1
        return
    except Exception:  # the last guard: a page must not end the shard, and the count makes it visible
        counts.failed[R.PARSE_ERROR] += 1
        return
    if record.damage:
        counts.failed[record.damage] += 1
    else:
        counts.used += 1
    counts.pages += 1
    counts.pages_opted_out += page.opt_out
    counts.pages_row_capped += page.unlisted > 0
    counts.images_unlisted += page.unlisted
    pairs.add_page(page_url, page.base_href, page.images, page.opt_out)


def _crawl_url_list(
    open_source: Callable[[], BinaryIO], columns: UrlListConfig, pairs: _PairTable, counts: _RecordCounts
) -> None:
    """Each row of a URL list is a record and a candidate; URLs must be absolute (there is no page)."""
    read = unread = bad_sha256 = bad_uid = 0
    with open_source() as f:
        declared = url_list_rows(f)
        f.seek(0)
        for batch in iter_url_list(f, columns):
            if batch.failure:
                counts.records_in += 1
                counts.failed[batch.failure] += 1
                unread += batch.rows
                continue
            counts.records_in += len(batch.urls)
            counts.used += len(batch.urls)
            read += len(batch.urls)
            bad_sha256 += batch.bad_sha256
            bad_uid += batch.bad_uid
            listed = zip(batch.uids, batch.sha256, batch.fields, strict=True)
            for url, text, bad, row in zip(batch.urls, batch.texts, batch.bad, listed, strict=True):
                caption = normalize_text(text) if text else ""
                pairs.add(clean_src(url), caption, "caption" if caption else "", "", "", invalid=bad, listed=row)
    counts.read = {
        "url_list.rows": declared,
        "url_list.rows_read": read,
        "url_list.rows_unread": unread,
        "url_list.bad_sha256": bad_sha256,  # claimed hashes that are no SHA-256: those rows go unverified
        "url_list.bad_uid": bad_uid,  # list uids too long to be identifiers: left out
    }


class SourceUnreadable(ValueError):
    """A source file with nothing in it that reads as a record: the shard fails, naming the file, rather than
    passing on as an empty shard."""


def _opener(lake: Lake, source: str, config: CrawlConfig) -> tuple[Callable[[], BinaryIO], str]:
    """How to open a source, and how to name it: a lake path through the lake, a URL where it lies (streamed in
    ranges, never copied into the lake; a URL that is gone raises :class:`infra.remote.RemoteSourceError`)."""
    if is_remote(source):
        return lambda: RemoteFile(source, config.remote), source
    if not lake.exists(source):
        raise FileNotFoundError(lake.uri(source))
    return lambda: lake.open(source), lake.uri(source)


def crawl_shard(lake: Lake, source: str, shard: str, config: CrawlConfig) -> StageReport:
    """Crawl one source (WARC, WAT or URL-list parquet; a lake path or an ``s3://`` / ``https://`` URL) into
    ``crawl/<shard>.parquet`` and its report.

    Damaged records are counted in the report, never raised; a missing source, or one in which not a single
    record can be read, raises: the first is a wrong path (or a manifest line that 404s), the second not a web
    archive at all. A remote transfer that breaks is resumed (:mod:`infra.remote`) and fails the shard only once
    its retries are spent.
    """

    def decide(_: None) -> Decisions:
        pairs = _PairTable(config)
        counts = _RecordCounts()
        fmt = source_format(source.split("?", 1)[0])
        open_source, name = _opener(lake, source, config)
        if fmt == "url_list":
            _crawl_url_list(open_source, config.url_list, pairs, counts)
        else:
            totals = ReadTotals()
            for record in iter_warc(open_source, totals):
                _take_record(record, pairs, counts)
            counts.read = totals.to_extra()
            if counts.records_in == counts.failed[R.NOT_A_WARC] > 0:
                raise SourceUnreadable(f"{name} holds no WARC or WAT record at all")
        return Decisions(pairs.to_table(), extra={"source_format": fmt, **counts.to_extra(len(pairs))})

    return run_shard_stage(lake, graph.stage("crawl"), shard, decide)


def record_problems(_lake: Lake, _shard: str, report: StageReport) -> list[str]:
    """The crawl's own books beside the pair ledger: every source record used, ignored or failed, and every byte
    of the source read, separated or reported skipped (:func:`ops.crawl.books.read_problems`)."""
    return read_problems(report.extra)
