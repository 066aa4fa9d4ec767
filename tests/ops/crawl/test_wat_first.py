"""WAT-first crawling: the WAT Common Crawl would publish for a WARC gives the WARC's pairs, except where WAT
cannot carry them (lazy-loaded images, ``data-image-title``, ``<img>`` without ``src``)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from infra.synthetic.wat import write_wat
from tests.ops.crawl.crawling import check_accounting, crawl
from tests.ops.crawl.warcs import FIXTURES, WARC_FIXTURES, html_page, write_warc


def _kept(rows: list[dict]) -> list[tuple]:
    return [(r["page_url"], r["url"], r["text"], r["text_source"]) for r in rows if r["kept"]]


def _row(r: dict) -> tuple:
    return (r["page_url"], r["url"], r["text"], r["reason"])


def _crawl_both(tmp_path: Path, warc: Path) -> tuple[tuple, tuple]:
    wat = write_wat(warc, tmp_path / warc.name.replace(".warc.gz", ".warc.wat.gz"))
    return crawl(tmp_path / "warc", warc), crawl(tmp_path / "wat", wat)


@pytest.mark.parametrize("name", WARC_FIXTURES)
def test_fixture_wat_keeps_the_warc_pairs(tmp_path: Path, name: str) -> None:
    (warc_report, warc_rows), (wat_report, wat_rows) = _crawl_both(tmp_path, FIXTURES / "warc" / name)
    check_accounting(wat_report, wat_rows)
    assert wat_report.extra["source_format"] == "wat"
    assert wat_report.extra["pages"] == warc_report.extra["pages"]
    assert _kept(wat_rows) == _kept(warc_rows)
    # every WAT row is a WARC row; the WARC has more only for <img> tags without src, which WAT does not list
    wat_all, warc_all = Counter(map(_row, wat_rows)), Counter(map(_row, warc_rows))
    assert not wat_all - warc_all
    assert all(url == "" for _, url, _, _ in warc_all - wat_all)


def test_wat_links_resolve_and_opt_out_like_the_html(tmp_path: Path) -> None:
    """Relative, protocol-relative, ``<base>``-relative and entity-encoded sources; robots meta and the
    ``X-Robots-Tag`` header; and the documented losses: ``data-src``-only images, ``data-image-title``, no src."""
    body = (
        '<img src="a.png" alt="relative">'
        '<img src="../up/b.png" title="parent dir">'
        '<img src="//cdn.example.net/c.png" alt="protocol relative">'
        '<img src="d.png?x=1&amp;y=2" alt="entity &amp; encoded">'
        '<img src="data:image/gif;base64,R0lGOD" data-src="lazy.png" alt="lazy loaded">'
        '<img src="e.png" data-image-title="only a data title">'
        '<img alt="no source at all">'
    )
    pages = [
        html_page("http://shop.example.com/dir/page.html", f"<html><head></head><body>{body}</body></html>"),
        html_page(
            "http://shop.example.com/based.html",
            '<html><head><base href="/static/img/"></head><body><img src="f.png" alt="based"></body></html>',
        ),
        html_page(
            "http://shop.example.com/meta-out.html",
            '<html><head><meta name="robots" content="index, noai"></head><body><img src="g.png" alt="g"></body>',
        ),
        html_page(
            "http://shop.example.com/header-out.html",
            '<html><body><img src="h.png" alt="h"></body></html>',
            headers=[("Content-Type", "text/html; charset=utf-8"), ("X-Robots-Tag", "noimageai")],
        ),
    ]
    warc = write_warc(tmp_path / "pages.warc.gz", pages)
    (_, warc_rows), (wat_report, wat_rows) = _crawl_both(tmp_path, warc)
    check_accounting(wat_report, wat_rows)
    wat_kept = {(r["url"], r["text"]) for r in wat_rows if r["kept"]}
    assert wat_kept == {
        ("http://shop.example.com/dir/a.png", "relative"),
        ("http://shop.example.com/up/b.png", "parent dir"),
        ("http://cdn.example.net/c.png", "protocol relative"),
        ("http://shop.example.com/dir/d.png?x=1&y=2", "entity & encoded"),
        ("http://shop.example.com/static/img/f.png", "based"),
    }
    assert {r["url"]: r["reason"] for r in wat_rows if r["reason"] == "opt_out"} == {
        "http://shop.example.com/g.png": "opt_out",
        "http://shop.example.com/h.png": "opt_out",
    }
    warc_kept = {(r["url"], r["text"]) for r in warc_rows if r["kept"]}
    assert warc_kept - wat_kept == {
        ("http://shop.example.com/dir/lazy.png", "lazy loaded"),
        ("http://shop.example.com/dir/e.png", "only a data title"),
    }
    assert not wat_kept - warc_kept
    wat_reasons = {r["url"]: r["reason"] for r in wat_rows}
    assert wat_reasons["http://shop.example.com/dir/e.png"] == "no_text"
    assert "data_uri" in {r["reason"] for r in wat_rows}  # the lazy image's placeholder, as Common Crawl lists it


def test_written_wat_has_the_common_crawl_layout(tmp_path: Path) -> None:
    """One metadata JSON record per WARC record after a warcinfo record; image links as ``IMG@/src`` with alt and
    title only; anchors with their text."""
    pages = [
        html_page(
            "http://e.com/p.html",
            '<html><head><title>T</title></head><body><a href="/x">an <b>anchor</b></a>'
            '<img src="i.png" alt="A" title="T" data-image-title="D" data-src="l.png" width="3"><img alt="x"></body>',
        )
    ]
    warc = write_warc(tmp_path / "p.warc.gz", pages)
    wat = write_wat(warc, tmp_path / "p.warc.wat.gz")
    records = gzip.decompress(wat.read_bytes()).split(b"WARC/1.0\r\n")[1:]
    assert b"WARC-Type: warcinfo" in records[0]
    docs = [json.loads(r.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n\r\n", 1)[0]) for r in records[1:]]
    assert len(docs) == 3  # warcinfo, request and response of the WARC
    html = docs[2]["Envelope"]["Payload-Metadata"]["HTTP-Response-Metadata"]["HTML-Metadata"]
    assert html["Head"]["Title"] == "T"
    assert html["Links"] == [
        {"path": "A@/href", "url": "/x", "text": "an anchor"},
        {"path": "IMG@/src", "url": "i.png", "alt": "A", "title": "T"},
    ]
