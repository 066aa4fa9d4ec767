"""Hostile pages at real scale: each is recorded with its reason and the rest of the shard goes on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops.crawl import CrawlConfig
from tests.ops.crawl.crawling import check_accounting, crawl
from tests.ops.crawl.warcs import REPO, html_page, write_warc, write_wat

GOOD = html_page("http://good.example/", '<html><body><img src="/ok.png" alt="a red circle"></body></html>')


def test_page_with_100000_img_tags_is_capped_not_fatal(tmp_path: Path) -> None:
    body = "".join(f'<img src="/{i}.png" alt="picture {i}">' for i in range(100_000))
    source = write_warc(tmp_path / "huge.warc.gz", [html_page("http://big.example/", body), GOOD])
    report, rows = crawl(tmp_path, source, CrawlConfig(detect_language=False))
    check_accounting(report, rows)
    assert report.rows_in == 2001
    assert report.dropped["page_image_cap"] == 1000
    assert (report.extra["images_unlisted"], report.extra["pages_row_capped"]) == (98_000, 1)
    assert [r["text"] for r in rows[:2000]] == [f"picture {i}" for i in range(2000)]
    assert rows[-1]["url"] == "http://good.example/ok.png" and rows[-1]["kept"]


@pytest.mark.parametrize(
    "tag",
    ['<img src="a.png" alt="x">', "<IMG SRC=a.png ALT=x>", "<image src=a.png alt=x>", "<iMaGe\nsrc=a.png alt=x/>"],
)
@pytest.mark.parametrize("n", [2001, 25_000])
def test_image_floods_of_every_spelling_are_capped_and_counted(tmp_path: Path, tag: str, n: int) -> None:
    """Whatever the spelling the parser turns into an <img>, tags past the row cap are counted, not listed; a
    robots meta after the flood still opts the page out."""
    head = '<html><head><base href="/sub/"></head><body>'
    tail = '<meta name="robots" content="noai"></body>'
    source = write_warc(tmp_path / "flood.warc.gz", [html_page("http://f.example/", head + tag * n + tail), GOOD])
    report, rows = crawl(tmp_path, source, CrawlConfig(detect_language=False, max_rows_per_page=500))
    check_accounting(report, rows)
    assert report.rows_in == 501
    assert report.extra["images_unlisted"] == n - 500
    assert {r["reason"] for r in rows[:500]} == {"opt_out"}
    assert rows[0]["url"] == "http://f.example/sub/a.png"


def test_wat_link_flood_is_capped(tmp_path: Path) -> None:
    links = [{"path": "IMG@/src", "url": f"/{i}.png", "alt": f"p {i}"} for i in range(30_000)]
    doc = {
        "Envelope": {
            "WARC-Header-Metadata": {"WARC-Target-URI": "http://w.example/"},
            "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Links": links}}},
        }
    }
    report, rows = crawl(tmp_path, write_wat(tmp_path / "flood.wat.gz", [("http://w.example/", doc)]))
    check_accounting(report, rows)
    assert report.rows_in == 2000
    assert report.extra["images_unlisted"] == 28_000


def test_a_page_cannot_multiply_long_values(tmp_path: Path) -> None:
    """A megabyte-long <base href>, data: URI or alt text repeated over a page is stored cut to its limit: the
    table grows with the number of tags, not with tags times the value's length."""
    long_base = "http://b.example/" + "d/" * 500_000
    data_uri = "data:image/png;base64," + "A" * 1_000_000
    alt = "word " * 200_000
    body = (
        f'<base href="{long_base}">'
        + '<img src="rel.png" alt="relative">' * 50
        + f'<img src="{data_uri}" alt="inline">' * 20
        + f'<img src="/x.png" alt="{alt}">' * 20
    )
    report, rows = crawl(tmp_path, write_warc(tmp_path / "long.warc.gz", [html_page("http://p.example/", body)]))
    check_accounting(report, rows)
    assert [r["url"] for r in rows[:50]] == ["http://p.example/rel.png"] * 50  # the base was ignored
    assert {r["reason"] for r in rows[50:70]} == {"data_uri"}
    assert {r["reason"] for r in rows[70:]} == {"text_too_long"}
    config = CrawlConfig()
    assert max(len(r["url"]) for r in rows) <= config.max_url_chars
    assert max(len(r["text"]) for r in rows) <= config.max_text_chars


def _peak_growth_mib(tmp_path: Path, tags: int) -> int:
    """Peak memory growth (MiB) of a fresh process crawling one 8 MiB page holding ``tags`` <img> tags."""
    script = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from infra.lake import Lake
from ops.crawl import CrawlConfig, crawl_shard
from tests.ops.crawl.warcs import html_page, write_warc
tag = '<img src="/a.png" alt="x">' * {tags}
body = "<html><body>" + tag + "<p>" + "y" * ((8 << 20) - len(tag)) + "</p></body></html>"
root = Path({str(tmp_path)!r}) / "lake{tags}"
write_warc(root / "sources" / "f.warc.gz", [html_page("http://big.example/", body)])
del body, tag

def peak_kib():  # VmHWM: this process's peak since exec (ru_maxrss would carry the forking parent's)
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1])

before = peak_kib()
crawl_shard(Lake(str(root)), "sources/f.warc.gz", "s", CrawlConfig(detect_language=False))
print((peak_kib() - before) // 1024)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def test_crawl_memory_is_flat_in_the_number_of_image_tags(tmp_path: Path) -> None:
    """Two pages of the same size, one with a single <img> and one with 300,000: the flood costs the crawl no
    more than a few MiB (listing every tag as a row took about 250 MiB more)."""
    assert _peak_growth_mib(tmp_path, 300_000) - _peak_growth_mib(tmp_path, 1) < 40


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
