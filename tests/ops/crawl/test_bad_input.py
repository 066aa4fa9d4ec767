"""Hostile pages at real scale: each is recorded with its reason and the rest of the shard goes on."""

from __future__ import annotations

from pathlib import Path

from ops.crawl import CrawlConfig
from tests.ops.crawl.crawling import check_accounting, crawl
from tests.ops.crawl.warcs import html_page, write_warc

GOOD = html_page("http://good.example/", '<html><body><img src="/ok.png" alt="a red circle"></body></html>')


def test_page_with_100000_img_tags_is_capped_not_fatal(tmp_path: Path) -> None:
    body = "".join(f'<img src="/{i}.png" alt="picture {i}">' for i in range(100_000))
    source = write_warc(tmp_path / "huge.warc.gz", [html_page("http://big.example/", body), GOOD])
    report, rows = crawl(tmp_path, source, CrawlConfig(detect_language=False))
    check_accounting(report, rows)
    assert report.rows_in == 100_001
    assert report.dropped["page_image_cap"] == 100_000 - 1000
    assert rows[-1]["url"] == "http://good.example/ok.png" and rows[-1]["kept"]


def test_one_megabyte_alt_text_is_dropped_with_its_reason(tmp_path: Path) -> None:
    huge = "spam " * 200_000
    page = html_page("http://alt.example/", f'<img src="/a.png" alt="{huge}"><img src="/b.png" alt="fine caption">')
    report, rows = crawl(tmp_path, write_warc(tmp_path / "alt.warc.gz", [page, GOOD]))
    check_accounting(report, rows)
    assert [r["reason"] for r in rows] == ["text_too_long", "", ""]


def test_malformed_html_still_yields_its_images(tmp_path: Path) -> None:
    broken = (
        '<html><head><title>x</title><body><div><p><img src="/1.png" alt="first"<img src=/2.png alt=second>'
        '<table><tr><td><img alt="third" src="/3.png"></div></span></body><img src="/4.png" alt="after body">'
        "<script>document.write('<img src=/5.png alt=scripted>')</script><!-- <img src=/6.png alt=comment> -->"
        '<img src="/7.png" alt="unclosed'
    )
    report, rows = crawl(
        tmp_path, write_warc(tmp_path / "broken.warc.gz", [html_page("http://m.example/", broken), GOOD])
    )
    check_accounting(report, rows)
    texts = [r["text"] for r in rows if r["kept"]]
    assert texts == ["first", "third", "after body", "a red circle"]
    assert "scripted" not in texts and "comment" not in texts
    assert report.extra["records_failed"] == 0


def test_an_unclosed_title_swallows_the_page_as_browsers_do(tmp_path: Path) -> None:
    page = html_page("http://t.example/", '<html><head><title>oops</head><body><img src="/x.png" alt="hidden">')
    report, rows = crawl(tmp_path, write_warc(tmp_path / "title.warc.gz", [page, GOOD]))
    check_accounting(report, rows)
    assert [r["text"] for r in rows] == ["a red circle"]
