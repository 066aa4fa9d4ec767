"""URL resolution and URL policy: what the downloader may be asked to fetch."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.crawl.urls import UrlPolicy, clean_src, parse_ipv4

PAGE = "http://example.com/dir/page.html"


@pytest.fixture
def policy() -> UrlPolicy:
    return UrlPolicy()


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("img/a.png", "http://example.com/dir/img/a.png"),
        ("/a.png", "http://example.com/a.png"),
        ("../a.png", "http://example.com/a.png"),
        ("//cdn.example.net/a.png", "http://cdn.example.net/a.png"),
        ("?v=2", "http://example.com/dir/page.html?v=2"),
        ("a.png#section", "http://example.com/dir/a.png"),
        ("https://other.org/x.jpg", "https://other.org/x.jpg"),
        ("HTTP://Other.ORG/X.jpg", "http://other.org/X.jpg"),
        ("\\\\cdn.example.net\\img\\a.png", "http://cdn.example.net/img/a.png"),
        ("http://user:pw@example.org:8080/a.png", "http://user:pw@example.org:8080/a.png"),
    ],
)
def test_resolves_like_a_browser(policy: UrlPolicy, src: str, expected: str) -> None:
    assert policy.resolve(clean_src(src), PAGE) == (expected, "")


def test_clean_src_trims_controls_and_inner_newlines() -> None:
    assert clean_src("  \n /a\n/b.png\t ") == "/a/b.png"
    assert clean_src(None) == ""
    assert clean_src(" \x00 ") == ""


def test_base_href_is_resolved_against_the_page(policy: UrlPolicy) -> None:
    base = policy.base_for(PAGE, "/static/")
    assert base == "http://example.com/static/"
    assert policy.resolve("a.png", base) == ("http://example.com/static/a.png", "")
    assert policy.base_for(PAGE, "https://cdn.example.net/x/") == "https://cdn.example.net/x/"
    assert policy.base_for(PAGE, "javascript:void(0)") == PAGE
    assert policy.base_for(PAGE, None) == PAGE
    assert policy.base_for(PAGE, "   ") == PAGE


@pytest.mark.parametrize(
    ("src", "reason"),
    [
        ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "data_uri"),
        ("DATA:image/png;base64,xx", "data_uri"),
        ("javascript:void(0)", "bad_scheme"),
        ("mailto:a@example.com", "bad_scheme"),
        ("ftp://example.com/a.png", "bad_scheme"),
        ("blob:https://example.com/uuid", "bad_scheme"),
        ("http://", "invalid_url"),
        ("http://[::1/a.png", "invalid_url"),
        ("http://exa mple.com/a.png", "invalid_url"),
        ("http://1.2.3.256/a.png", "invalid_url"),
        ("http://example.com:99999/a.png", "invalid_url"),
        ("http://example.123/a.png", "invalid_url"),
    ],
)
def test_refused_urls(policy: UrlPolicy, src: str, reason: str) -> None:
    assert policy.resolve(src, PAGE)[1] == reason


def test_relative_url_without_a_page_is_invalid(policy: UrlPolicy) -> None:
    assert policy.resolve("a.png", "") == ("a.png", "invalid_url")


def test_url_too_long() -> None:
    policy = UrlPolicy(max_url_chars=40)
    assert policy.resolve("http://example.com/" + "a" * 21, "")[1] == ""
    assert policy.resolve("http://example.com/" + "a" * 22, "")[1] == "url_too_long"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://127.8.9.10/a.png",
        "http://10.1.2.3/a.png",
        "http://172.16.0.1/a.png",
        "http://192.168.1.1/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/a.png",
        "http://100.64.0.1/a.png",
        "http://224.0.0.1/a.png",
        "http://240.0.0.1/a.png",
        "http://255.255.255.255/a.png",
        "http://2130706433/a.png",
        "http://0x7f000001/a.png",
        "http://0x7f.1/a.png",
        "http://0177.0.0.1/a.png",
        "http://127.1/a.png",
        "http://017700000001/a.png",
        "http://127.0.0.1./a.png",
        "http://１２７.０.０.１/a.png",
        "http://[::1]/a.png",
        "http://[::]/a.png",
        "http://[fe80::1]/a.png",
        "http://[fc00::1]/a.png",
        "http://[ff02::1]/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://[::ffff:7f00:1]/a.png",
        "http://[::ffff:10.0.0.1]/a.png",
        "http://[2002:7f00:1::]/a.png",
        "http://[64:ff9b::a00:1]/a.png",
        "http://localhost/a.png",
        "http://LOCALHOST./a.png",
        "http://img.localhost:8080/a.png",
        "http://evil.example@127.0.0.1/a.png",
    ],
)
def test_private_addresses_are_refused(policy: UrlPolicy, url: str) -> None:
    assert policy.resolve(url, PAGE)[1] == "private_address", url


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://8.8.8.8/a.png", "http://8.8.8.8/a.png"),
        ("http://134744072/a.png", "http://8.8.8.8/a.png"),
        ("http://0x08.0x08.0x08.0x08/a.png", "http://8.8.8.8/a.png"),
        ("http://[2606:4700:0::1111]/a.png", "http://[2606:4700::1111]/a.png"),
        ("http://[::ffff:8.8.8.8]/a.png", "http://[::ffff:808:808]/a.png"),
        ("http://bücher.example/a.png", "http://xn--bcher-kva.example/a.png"),
        ("https://例え.テスト/画像.png", "https://xn--r8jz45g.xn--zckzah/画像.png"),
        ("http://EXAMPLE.com:8080/A.png", "http://example.com:8080/A.png"),
        ("http://private.example.com/a.png", "http://private.example.com/a.png"),
    ],
)
def test_public_hosts_are_kept_in_canonical_form(policy: UrlPolicy, url: str, canonical: str) -> None:
    assert policy.resolve(url, PAGE) == (canonical, "")


def test_allow_networks_opens_exactly_those_networks() -> None:
    policy = UrlPolicy(allow_networks=("127.0.0.1/32",))
    assert policy.resolve("http://127.0.0.1:8000/a.png", "") == ("http://127.0.0.1:8000/a.png", "")
    assert policy.resolve("http://2130706433:8000/a.png", "") == ("http://127.0.0.1:8000/a.png", "")
    assert policy.resolve("http://[::ffff:127.0.0.1]/a.png", "")[1] == ""
    assert policy.resolve("http://localhost:8000/a.png", "")[1] == ""
    assert policy.resolve("http://127.0.0.2/a.png", "")[1] == "private_address"
    assert policy.resolve("http://10.0.0.1/a.png", "")[1] == "private_address"
    assert policy.resolve("http://[::1]/a.png", "")[1] == "private_address"
    assert UrlPolicy(allow_networks=("::1/128",)).resolve("http://[::1]/a.png", "")[1] == ""


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.0x1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("1.2.3", "1.2.0.3"),
        ("0x", "0.0.0.0"),
        ("1.2.3.4.", "1.2.3.4"),
        ("1.2.3.4.5", None),
        ("1..2", None),
        ("09.1.1.1", None),
        ("256.1.1.1", None),
        ("1.2.65536", None),
        ("1_0.0.0.1", None),
        (" 1.2.3.4", None),
    ],
)
def test_parse_ipv4_follows_the_url_standard(host: str, address: str | None) -> None:
    parsed = parse_ipv4(host)
    assert parsed == (ipaddress.IPv4Address(address) if address else None)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    before=st.text("0123456789abcdefx.", min_size=1, max_size=12),
    bad=st.sampled_from([c for c in map(chr, range(0x21)) if c not in "\t\n\r"] + ["\x7f", "%", "^", "|", "<", ">"]),
    after=st.text("0123456789abcdef-.", max_size=8),
)
def test_a_host_with_a_forbidden_code_point_is_invalid(before: str, bad: str, after: str) -> None:
    """A resolver stops reading a numeric host at whitespace ("02274\\f6-a" is the address 0.0.4.188): a host holding
    a control, a space or a delimiter is never passed on as a name (found by the url_policy fuzz target). Tabs and
    newlines are not in the list: URLs drop them wherever they are."""
    url, reason = UrlPolicy().resolve(f"http://{before}{bad}{after}/img.png", "")
    assert reason in ("invalid_url", "bad_scheme"), (url, reason)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    before=st.text("abcf0123.:-", max_size=6),
    literal=st.sampled_from(["::1", "324b::", "2001:db8::1", "::ffff:127.0.0.1", "1.2.3.4"]),
    after=st.text("abc0123:.]", max_size=5),
)
def test_brackets_anywhere_but_around_the_whole_host_are_invalid(before: str, literal: str, after: str) -> None:
    """Python's parser takes the bracketed part of "ff:[324b::]" as the host and ignores the rest: only "[literal]"
    optionally followed by ":port" is an authority (found by the url_policy fuzz target)."""
    authority = f"{before}[{literal}]{after}"
    url, reason = UrlPolicy().resolve(f"http://{authority}/img.png", "")
    whole = before == "" and (after == "" or (after[0] == ":" and after[1:].isdigit()))
    if not whole:
        assert reason == "invalid_url", (url, reason)
