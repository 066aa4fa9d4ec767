"""WAT metadata records: the CommonCrawl JSON layout, and JSON that does not follow it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from warcio.warcwriter import WARCWriter

from ops.crawl.wat import WatError, parse_wat
from tests.ops.crawl.crawling import check_accounting, crawl
from tests.ops.crawl.warcs import write_wat


def wat_doc(
    links: list,
    head: dict | None = None,
    headers: dict | None = None,
    status: str = "200",
    url: str = "http://e.com/dir/page.html",
) -> dict:
    return {
        "Envelope": {
            "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": url},
            "Payload-Metadata": {
                "HTTP-Response-Metadata": {
                    "Response-Message": {"Status": status},
                    "Headers": headers or {"Content-Type": "text/html"},
                    "HTML-Metadata": {"Head": head or {}, "Links": links},
                }
            },
        }
    }


def test_image_links_base_and_text() -> None:
    doc = wat_doc(
        [
            {"path": "A@/href", "url": "/other", "text": "a link"},
            {"path": "IMG@/src", "url": "a.png", "alt": "  An   image "},
            {"path": "IMG@/src", "url": "b.png", "title": "Titled"},
            {"path": "IMG@/src", "url": "c.png"},
            {"path": "IMG@/src", "alt": "no url"},
        ],
        head={"Base": "/static/"},
    )
    wat = parse_wat(json.dumps(doc).encode())
    assert wat is not None
    assert wat.page_url == "http://e.com/dir/page.html"
    assert wat.status == 200
    assert wat.page.base_href == "/static/"
    assert wat.page.images == [
        ("a.png", "An image", "alt"),
        ("b.png", "Titled", "title"),
        ("c.png", "", ""),
        ("", "no url", "alt"),
    ]
    assert not wat.page.opt_out


@pytest.mark.parametrize(
    ("head", "headers"),
    [
        ({"Metas": [{"name": "robots", "content": "NOAI"}]}, None),
        ({"Metas": [{"http-equiv": "x-robots-tag", "content": "noimageai"}]}, None),
        (None, {"X-Robots-Tag": "noindex, noai"}),
        (None, {"x-robots-tag": ["noindex", "noimageai"]}),
    ],
)
def test_opt_out(head: dict | None, headers: dict | None) -> None:
    wat = parse_wat(json.dumps(wat_doc([], head=head, headers=headers)).encode())
    assert wat is not None and wat.page.opt_out


def test_records_without_html_metadata() -> None:
    assert parse_wat(b'{"Envelope": {"Payload-Metadata": {"HTTP-Request-Metadata": {}}}}') is None
    assert parse_wat(b"[1, 2, 3]") is None
    assert parse_wat(b'{"Envelope": "not a dict"}') is None


def test_unexpected_types_are_skipped_not_raised() -> None:
    doc = wat_doc(
        ["not a dict", {"path": 5}, {"path": "IMG@/src", "url": 7, "alt": ["x"]}], head={"Metas": "nope", "Base": 3}
    )
    wat = parse_wat(json.dumps(doc).encode())
    assert wat is not None
    assert wat.page.images == [("", "", "")]
    assert wat.page.base_href is None


def test_lone_surrogates_become_encodable() -> None:
    body = json.dumps(wat_doc([{"path": "IMG@/src", "url": "a.png", "alt": "bad \udc80 text"}])).encode()
    wat = parse_wat(body)
    assert wat is not None
    text = wat.page.images[0][1]
    text.encode("utf-8")
    assert text.startswith("bad ")


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00", b"", b"[" * 100_000])
def test_invalid_json_raises_wat_error(body: bytes) -> None:
    with pytest.raises(WatError):
        parse_wat(body)


def test_wat_shard_accounting(tmp_path: Path) -> None:
    docs = [
        (
            "http://e.com/dir/page.html",
            wat_doc([{"path": "IMG@/src", "url": "a.png", "alt": "An image"}], head={"Base": "/s/"}),
        ),
        ("http://e.com/404", wat_doc([{"path": "IMG@/src", "url": "b.png", "alt": "gone"}], status="404")),
        (
            "http://e.com/out",
            wat_doc(
                [{"path": "IMG@/src", "url": "c.png", "alt": "c"}],
                headers={"X-Robots-Tag": "noai"},
                url="http://e.com/out",
            ),
        ),
    ]
    path = write_wat(tmp_path / "t.warc.wat.gz", docs)
    with path.open("ab") as f:  # a metadata record whose JSON is cut short
        writer = WARCWriter(f, gzip=True)
        payload = b'{"Envelope": {"Payload'
        writer.write_record(
            writer.create_warc_record(
                "http://e.com/x",
                "metadata",
                payload=io.BytesIO(payload),
                length=len(payload),
                warc_content_type="application/json",
            )
        )
    report, rows = crawl(tmp_path, path)
    check_accounting(report, rows)
    assert [(r["url"], r["reason"]) for r in rows] == [("http://e.com/s/a.png", ""), ("http://e.com/c.png", "opt_out")]
    assert report.extra["records_ignored.http_status"] == 1
    assert report.extra["records_failed.malformed_json"] == 1
    assert report.extra["records_used"] == 2
