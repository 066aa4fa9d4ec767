"""The crawl op end to end: real fixtures against independent warcio + BeautifulSoup readings, and the pair
semantics (opt-out, base href, duplicates, caps, URL lists, encodings, languages) on tiny WARCs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.lake import Lake
from ops.crawl import CrawlConfig, crawl_shard
from ops.crawl.shard import SourceUnreadable
from ops.report import StageReport
from tests.ops.crawl.crawling import check_accounting, crawl
from tests.ops.crawl.warcs import (
    FIXTURES,
    WARC_FIXTURES,
    Page,
    count_imgs_with_text,
    html_page,
    html_responses,
    request_wat_json,
    wat_json,
    write_warc,
    write_wat,
)

NO_PAIR = ("no_text", "no_src")


def page_html(body: str, head: str = "") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


# --- real fixtures -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WARC_FIXTURES)
def test_fixture_pairs_match_an_independent_count(tmp_path: Path, name: str) -> None:
    path = FIXTURES / "warc" / name
    report, rows = crawl(tmp_path, path)
    check_accounting(report, rows)
    with_text = [r for r in rows if r["reason"] not in NO_PAIR]
    assert len(with_text) == count_imgs_with_text(path)
    assert report.extra["pages"] == sum(1 for _ in html_responses(path))
    assert report.extra["records_failed"] == 0
    assert report.rows_kept > 0


def test_fixture_urls_are_resolved(tmp_path: Path) -> None:
    _, rows = crawl(tmp_path, FIXTURES / "warc" / "whirlwind.warc.gz")
    by_text = {r["text"]: r for r in rows if r["text"]}
    wordmark = by_text["Biquipedia"]  # src="/static/images/mobile/copyright/wikipedia-wordmark-an.svg"
    assert wordmark["url"] == "https://an.wikipedia.org/static/images/mobile/copyright/wikipedia-wordmark-an.svg"
    assert wordmark["page_url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert wordmark["text_source"] == "alt"
    shield = by_text["Escudo d'armas"]  # protocol-relative, and an entity in the alt text
    assert shield["url"] == (
        "https://upload.wikimedia.org/wikipedia/commons/thumb/0/0a/Escudo_de_Escopete_%28Guadalajara%29.svg/"
        "70px-Escudo_de_Escopete_%28Guadalajara%29.svg.png"
    )
    assert all(r["url"].startswith("https://") for r in rows if r["reason"] != "no_src")


def test_fixture_relative_urls_on_http_pages(tmp_path: Path) -> None:
    _, rows = crawl(tmp_path, FIXTURES / "warc" / "resiliparse-commoncrawl.warc.gz")
    logo = next(r for r in rows if r["page_url"] == "http://01spb.ru/company/" and r["text"])
    assert logo["url"] == "http://01spb.ru/logo.png"
    assert logo["text"] == "Стратегия пожарной безопасности"  # windows-1251 page
    assert logo["lang"] == "ru"
    chinese = [r for r in rows if r["page_url"] == "http://0760.jxtdw.com/area/sanxiang/" and r["kept"]]
    assert "中山英才网" in {r["text"] for r in chinese}  # gb2312 page
    assert all(r["url"].startswith("http://img3.jxtdw.com/") for r in chinese)


def test_clipped_fixture_yields_what_it_can(tmp_path: Path) -> None:
    report, rows = crawl(tmp_path, FIXTURES / "warc" / "resiliparse-clipped.warc.gz")
    check_accounting(report, rows)
    assert report.extra["records_failed.truncated_record"] == 1
    assert report.extra["records_used"] == 0
    assert report.extra["pages"] == 1
    assert rows and all(r["page_url"].startswith("http://www.houstonpress.com/") for r in rows)


def test_wat_gives_the_same_pairs_as_the_warc(tmp_path: Path) -> None:
    for name in WARC_FIXTURES:
        warc = FIXTURES / "warc" / name
        docs = []
        for page in html_responses(warc):
            docs.append((page.url, request_wat_json(page.url)))
            docs.append((page.url, wat_json(page)))
        wat = write_wat(tmp_path / f"{name.split('.')[0]}.warc.wat.gz", docs)
        wat_report, wat_rows = crawl(tmp_path / "wat" / name, wat)
        warc_report, warc_rows = crawl(tmp_path / "warc" / name, warc)
        check_accounting(wat_report, wat_rows)
        assert wat_report.extra["source_format"] == "wat"
        assert wat_report.extra["records_ignored.no_html_metadata"] == len(docs) // 2
        assert wat_report.extra["pages"] == warc_report.extra["pages"]

        def pairs(rows: list[dict]) -> list[tuple]:
            return [(r["page_url"], r["url"], r["text"], r["text_source"], r["reason"]) for r in rows if r["url"]]

        assert pairs(wat_rows) == pairs(warc_rows), name


def test_real_wat_fixture_has_nothing_to_crawl(tmp_path: Path) -> None:
    report, rows = crawl(tmp_path, FIXTURES / "warc" / "whirlwind.warc.wat.gz")
    check_accounting(report, rows)
    assert rows == []
    assert report.extra["records_ignored.no_html_metadata"] == 1
    assert report.extra["records_failed"] == 0


def test_url_list_parquet(tmp_path: Path) -> None:
    report, rows = crawl(tmp_path, FIXTURES / "captions" / "laion_sample_10000.parquet")
    check_accounting(report, rows)
    assert report.rows_in == 10_000
    assert report.extra["records_in"] == report.extra["records_used"] == 10_000
    assert report.extra["source_format"] == "url_list"
    assert report.rows_kept > 9_000
    source = pq.read_table(FIXTURES / "captions" / "laion_sample_10000.parquet").to_pylist()
    for src, row in zip(source, rows, strict=True):
        assert row["text"] == " ".join((src["TEXT"] or "").split())[: CrawlConfig().max_text_chars]
        assert row["text_source"] == ("caption" if row["text"] else "")
        assert row["page_url"] == ""
    # URLs pass through, except for host case and fragments (canonical form)
    changed = [(src["URL"], row["url"]) for src, row in zip(source, rows, strict=True) if row["url"] != src["URL"]]
    assert len(changed) < 20
    for before, after in changed:
        assert after.lower() == before.split("#", 1)[0].lower()[: CrawlConfig().max_url_chars]
    assert Counter(r["lang"] for r in rows if r["kept"]).most_common(1)[0][0] == "en"


def test_a_file_with_no_record_fails_its_shard_and_a_bad_url_list_is_recorded(tmp_path: Path) -> None:
    """Not one WARC record in the file: the shard fails naming it, rather than passing on as an empty shard (a file
    with some records and damage between them is read and its damage reported, see ``test_framing``)."""
    junk = tmp_path / "junk.warc.gz"
    junk.write_bytes(b"this is not a WARC file\n" * 100)
    with pytest.raises(SourceUnreadable, match=r"sources/junk\.warc\.gz holds no WARC or WAT record"):
        crawl(tmp_path, junk)
    assert not Lake(str(tmp_path / "lake")).exists("crawl/shard-0.parquet")
    bad_parquet = tmp_path / "junk.parquet"
    bad_parquet.write_bytes(b"PAR1 not really")
    report, rows = crawl(tmp_path, bad_parquet)
    check_accounting(report, rows)
    assert rows == []
    assert report.extra["records_failed.bad_url_list"] == 1


def test_missing_source_raises(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        crawl_shard(lake, "sources/missing.warc.gz", "s", CrawlConfig())


# --- pair semantics on tiny WARCs ------------------------------------------------------------------------------


def tiny(tmp_path: Path, pages: list[Page], config: CrawlConfig | None = None) -> tuple[StageReport, list[dict]]:
    report, rows = crawl(tmp_path, write_warc(tmp_path / "tiny.warc.gz", pages), config)
    check_accounting(report, rows)
    return report, rows


def test_text_fallbacks_and_normalisation(tmp_path: Path) -> None:
    body = (
        '<img src="/1.png" alt="  A   red\n\tcar ">'
        '<img src="/2.png" alt="" title="Title text">'
        '<img src="/3.png" alt=" " data-image-title="Data title">'
        '<img src="/4.png">'
        '<img alt="no source">'
        '<img src="" alt="empty source">'
        '<img data-src="/lazy.png" alt="lazy">'
        '<img src="data:image/gif;base64,R0lGOD" data-src="/lazy2.png" alt="placeholder">'
        '<img src="data:image/gif;base64,R0lGOD" alt="inline">'
        '<noscript><img src="/5.png" alt="in noscript"></noscript>'
        '<script>document.write("<img src=/6.png alt=scripted>")</script>'
    )
    _, rows = tiny(tmp_path, [html_page("http://e.com/p/", page_html(body))])
    got = [(r["url"], r["text"], r["text_source"], r["reason"]) for r in rows]
    assert got == [
        ("http://e.com/1.png", "A red car", "alt", ""),
        ("http://e.com/2.png", "Title text", "title", ""),
        ("http://e.com/3.png", "Data title", "data-image-title", ""),
        ("http://e.com/4.png", "", "", "no_text"),
        ("", "no source", "alt", "no_src"),
        ("", "empty source", "alt", "no_src"),
        ("http://e.com/lazy.png", "lazy", "alt", ""),
        ("http://e.com/lazy2.png", "placeholder", "alt", ""),
        ("data:image/gif;base64,R0lGOD", "inline", "alt", "data_uri"),
        ("http://e.com/5.png", "in noscript", "alt", ""),
    ]


def test_base_href(tmp_path: Path) -> None:
    pages = [
        html_page("http://e.com/a/page.html", page_html('<img src="x.png" alt="x">', '<base href="/static/">')),
        html_page("http://e.com/a/page.html", page_html('<img src="y.png" alt="y">', '<base href="//cdn.e.com/i/">')),
        html_page("http://e.com/a/page.html", page_html('<img src="z.png" alt="z">', '<base target="_top">')),
    ]
    _, rows = tiny(tmp_path, pages)
    assert [r["url"] for r in rows] == ["http://e.com/static/x.png", "http://cdn.e.com/i/y.png", "http://e.com/a/z.png"]


@pytest.mark.parametrize(
    "head",
    [
        '<meta name="robots" content="noai">',
        '<meta name="ROBOTS" content="index, follow, NoImageAI">',
        '<meta name="robots" content="noindex,noai">',
        '<meta http-equiv="X-Robots-Tag" content="noai">',
    ],
)
def test_opt_out_meta(tmp_path: Path, head: str) -> None:
    pages = [
        html_page("http://e.com/out", page_html('<img src="/a.png" alt="a"><img src="/b.png">', head)),
        html_page("http://e.com/in", page_html('<img src="/c.png" alt="c">')),
    ]
    report, rows = tiny(tmp_path, pages)
    assert [r["reason"] for r in rows] == ["opt_out", "no_text", ""]
    assert report.extra["pages_opted_out"] == 1
    _, rows = tiny(tmp_path / "off", pages, CrawlConfig(honour_opt_out=False))
    assert [r["reason"] for r in rows] == ["", "no_text", ""]


def test_no_opt_out_for_other_directives(tmp_path: Path) -> None:
    head = '<meta name="robots" content="index, nofollow, noarchive"><meta name="description" content="noai">'
    _, rows = tiny(tmp_path, [html_page("http://e.com/", page_html('<img src="/a.png" alt="a">', head))])
    assert rows[0]["kept"]


@pytest.mark.parametrize(
    "value", ["noai", "noindex, noimageai", "otherbot: noai", "none", "otherbot: none", "noindex", "noimageindex"]
)
def test_opt_out_header(tmp_path: Path, value: str) -> None:
    headers = [("Content-Type", "text/html"), ("X-Robots-Tag", value)]
    _, rows = tiny(tmp_path, [html_page("http://e.com/", page_html('<img src="/a.png" alt="a">'), headers=headers)])
    assert rows[0]["reason"] == "opt_out"


def test_duplicates_within_the_shard(tmp_path: Path) -> None:
    pages = [
        html_page("http://e.com/1", page_html('<img src="/logo.png" alt="Logo"><img src="/logo.png" alt="Logo">')),
        html_page(
            "http://e.com/2",
            page_html('<img src="http://e.com/logo.png#x" alt=" Logo "><img src="/logo.png" alt="Other">'),
        ),
        html_page(
            "http://e.com/3", page_html('<img src="/logo.png" alt="Logo">', '<meta name="robots" content="noai">')
        ),
    ]
    _, rows = tiny(tmp_path, pages)
    assert [r["reason"] for r in rows] == ["", "duplicate_pair", "duplicate_pair", "", "opt_out"]
    assert len({r["uid"] for r in rows}) == 2


def test_page_image_cap(tmp_path: Path) -> None:
    body = "".join(f'<img src="/{i}.png" alt="image {i}">' for i in range(7))
    _, rows = tiny(tmp_path, [html_page("http://e.com/", page_html(body))], CrawlConfig(max_images_per_page=3))
    assert [r["reason"] for r in rows] == [""] * 3 + ["page_image_cap"] * 4
    assert rows[5]["url"] == "http://e.com/5.png"


def test_text_too_long(tmp_path: Path) -> None:
    body = f'<img src="/a.png" alt="{"word " * 10}"><img src="/b.png" alt="{"word " * 11}">'
    _, rows = tiny(tmp_path, [html_page("http://e.com/", page_html(body))], CrawlConfig(max_text_chars=50))
    assert [r["reason"] for r in rows] == ["", "text_too_long"]
    assert rows[1]["text"] == ("word " * 11).strip()[:50]  # a dropped over-long value is stored cut at its limit


def test_url_policy_in_the_shard(tmp_path: Path) -> None:
    body = (
        '<img src="http://127.0.0.1:8000/a.png" alt="loopback">'
        '<img src="http://2130706433/b.png" alt="decimal">'
        '<img src="http://[::1]/c.png" alt="v6">'
        '<img src="http://bücher.example/d.png" alt="idn">'
        '<img src="javascript:alert(1)" alt="js">'
        f'<img src="/{"x" * 60}.png" alt="long">'
    )
    pages = [html_page("http://e.com/", page_html(body))]
    _, rows = tiny(tmp_path, pages, CrawlConfig(max_url_chars=50))
    assert [r["reason"] for r in rows] == [
        "private_address",
        "private_address",
        "private_address",
        "",
        "bad_scheme",
        "url_too_long",
    ]
    assert rows[1]["url"] == "http://127.0.0.1/b.png"
    assert rows[3]["url"] == "http://xn--bcher-kva.example/d.png"
    _, rows = tiny(tmp_path / "allow", pages, CrawlConfig(allow_networks=("127.0.0.1/32",), max_url_chars=50))
    assert [r["reason"] for r in rows][:3] == ["", "", "private_address"]


def test_non_utf8_alt_text(tmp_path: Path) -> None:
    def raw(url: str, body: bytes, content_type: str) -> Page:
        return Page(url, body, [("Content-Type", content_type)])

    pages = [
        raw("http://e.com/1", b'<img src="/1.png" alt="caf\xe9 cr\xe8me">', "text/html; charset=windows-1252"),
        raw("http://e.com/2", b'<img src="/2.png" alt="caf\xe9">', "text/html; charset=iso-8859-1"),
        raw(
            "http://e.com/3",
            '<img src="/3.png" alt="naïve – café">'.encode() + b'<img src="/3b.png" alt="caf\xe9">',
            "text/html; charset=utf-8",
        ),
        raw(
            "http://e.com/4",
            b'<meta charset="shift_jis"><img src="/4.png" alt="' + "写真".encode("shift_jis") + b'">',
            "text/html",
        ),
        raw("http://e.com/5", b'<img src="/5.png" alt="\xff\xfe\xfd">', "text/html; charset=no-such-charset"),
        raw("http://e.com/6", b"<html>" + bytes(range(256)) * 8, "text/html"),
        raw("http://e.com/7", b'<img src="/7.png" alt="fine">', "text/html"),
    ]
    report, rows = tiny(tmp_path, pages)
    texts = {r["url"].rsplit("/", 1)[1]: r["text"] for r in rows}
    assert texts["1.png"] == "café crème"
    assert texts["2.png"] == "café"
    assert texts["3.png"] == "naïve – café"
    assert texts["3b.png"] == "café"
    assert texts["4.png"] == "写真"
    assert texts["5.png"] == "ÿþý"
    assert texts["7.png"] == "fine"
    assert report.extra["records_failed.decode_error"] == 1  # page 6 is binary, not HTML
    assert report.extra["records_used"] == 6


def test_language_columns(tmp_path: Path) -> None:
    body = (
        '<img src="/1.png" alt="A photograph of a small dog playing in the garden">'
        '<img src="/2.png" alt="Ein kleiner Hund spielt im Garten hinter dem Haus">'
        '<img src="/3.png" alt="12345">'
        '<img src="/4.png">'
    )
    _, rows = tiny(tmp_path, [html_page("http://e.com/", page_html(body))])
    assert [r["lang"] for r in rows] == ["en", "de", "", ""]
    assert rows[0]["lang_prob"] > 0.5 and rows[1]["lang_prob"] > 0.5
    assert all(0.0 <= r["lang_prob"] <= 1.0 for r in rows)
    _, rows = tiny(tmp_path / "off", [html_page("http://e.com/", page_html(body))], CrawlConfig(detect_language=False))
    assert {(r["lang"], r["lang_prob"]) for r in rows} == {("", 0.0)}


def test_records_are_accounted(tmp_path: Path) -> None:
    pages = [
        html_page("http://e.com/ok", page_html('<img src="/a.png" alt="a">')),
        html_page("http://e.com/missing", page_html('<img src="/b.png" alt="b">'), status="404 Not Found"),
        Page("http://e.com/img.png", b"\x89PNG\r\n", [("Content-Type", "image/png")]),
    ]
    report, rows = tiny(tmp_path, pages)
    assert len(rows) == 1
    extra = report.extra
    assert extra["records_in"] == 7  # warcinfo + 3 requests + 3 responses
    assert extra["records_used"] == 1
    assert extra["records_ignored.request"] == 3
    assert extra["records_ignored.warcinfo"] == 1
    assert extra["records_ignored.http_status"] == 1
    assert extra["records_ignored.not_html"] == 1
    assert extra["pages"] == 1
    assert extra["pairs_per_page"] == 1.0


def test_rerun_gives_the_same_table(tmp_path: Path) -> None:
    path = FIXTURES / "warc" / "sample-0000.warc.gz"
    _, first = crawl(tmp_path / "a", path)
    _, second = crawl(tmp_path / "b", path)
    assert first == second


# --- hostile encodings ---------------------------------------------------------------------------------------


def test_pages_without_markup_and_unknown_charsets_are_recorded(tmp_path: Path) -> None:
    def raw(url: str, body: bytes, content_type: str) -> Page:
        return Page(url, body, [("Content-Type", content_type)])

    pages = [
        raw("http://e.com/1", b'<img src="/1.png" alt="caf\xe9">', "text/html; charset=cp037"),
        raw("http://e.com/2", b'<meta charset="ebcdic-cp-us"><img src="/2.png" alt="ok">', "text/html"),
        raw("http://e.com/3", b"plain words and no tags at all", "text/html"),
        raw("http://e.com/4", b'<img src="/4.png" alt="x">', "text/html; charset=iso-2022-kr"),
        raw("http://e.com/5", b'<meta charset="utf-16"><img src="/5.png" alt="caf\xe9">', "text/html"),
    ]
    report, rows = tiny(tmp_path, pages)
    check_accounting(report, rows)
    texts = {r["url"].rsplit("/", 1)[1]: r["text"] for r in rows}
    assert texts == {"1.png": "café", "2.png": "ok", "5.png": "café"}
    assert report.extra["pages_unsupported_charset"] == 2
    assert report.extra["records_ignored.no_markup"] == 1
    assert report.extra["records_failed.decode_error"] == 1
    assert report.extra["records_used"] == 3


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=30), st.booleans()), min_size=1, max_size=40))
def test_url_list_rows_with_invalid_utf8_are_dropped_not_fatal(tmp_path_factory, rows) -> None:
    """Any bytes in the string columns of a URL list: the rows that are not UTF-8 are dropped with their reason,
    the others are read, and the books balance."""
    tmp = tmp_path_factory.mktemp("urls")
    urls = [b"http://example.com/" + u for u, _, _ in rows]
    texts = [t if keep_text else None for _, t, keep_text in rows]
    table = pa.table(
        {
            "url": pa.array(urls, pa.binary()).view(pa.string()),
            "caption": pa.array(texts, pa.binary()).view(pa.string()),
        }
    )
    source = tmp / "hostile.parquet"
    pq.write_table(table, source, row_group_size=7)
    report, out = crawl(tmp, source)
    check_accounting(report, out)
    assert len(out) == len(rows)

    def utf8(data: bytes | None) -> bool:
        try:
            data is None or data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    bad = [not (utf8(u) and utf8(t)) for u, t in zip(urls, texts, strict=True)]
    assert [r["reason"] == "invalid_utf8" for r in out] == bad
    assert report.extra["url_list.rows"] == report.extra["url_list.rows_read"] == len(rows)
