"""Decoding HTML bodies whatever encoding they claim."""

from __future__ import annotations

import codecs
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.crawl.charset import (
    _CODEC_OF_LABEL,
    CharsetError,
    Decoded,
    NoMarkupError,
    codec_for,
    decode_page,
    sniff_meta_charset,
)


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("UTF-8", "utf-8"),
        ("utf8", "utf-8"),
        (" 'ISO-8859-1' ", "cp1252"),
        ("gb2312", "gb18030"),
        ("Shift_JIS", "cp932"),
        ("windows-1251", "cp1251"),
        ("base64", None),
        ("rot13", None),
        ("no-such-charset", None),
        ("", None),
        (None, None),
    ],
)
def test_codec_for(label: str | None, codec: str | None) -> None:
    assert codec_for(label) == codec


def decode_html(body: bytes, declared: str | None = None) -> str | bytes:
    return decode_page(body, declared).text


def test_sniff_meta_charset() -> None:
    assert sniff_meta_charset(b'<head><meta charset="windows-1251">') == "windows-1251"
    assert sniff_meta_charset(b'<meta http-equiv="Content-Type" content="text/html; charset=gbk">') == "gbk"
    assert sniff_meta_charset(b" " * 5000 + b'<meta charset="gbk">') is None


def test_valid_utf8_is_passed_through_as_bytes() -> None:
    body = "<p>naïve</p>".encode()
    assert decode_html(body, "utf-8") is body
    assert decode_html(body, None) is body


def test_declared_and_meta_charsets() -> None:
    assert decode_html("<p>Привет</p>".encode("cp1251"), "windows-1251") == "<p>Привет</p>"
    body = b'<meta charset="gb2312"><p>' + "中山英才网·".encode("gb18030") + b"</p>"
    assert "中山英才网·" in decode_html(body, None)
    assert decode_html(b"<p>caf\xe9</p>", "iso-8859-1") == "<p>café</p>"


def test_http_charset_wins_over_meta() -> None:
    body = b'<meta charset="utf-8"><p>' + "Привет".encode("cp1251") + b"</p>"
    assert "Привет" in decode_html(body, "windows-1251")


def test_stray_latin1_bytes_in_utf8_are_read_as_windows_1252() -> None:
    body = "<p>naïve ".encode() + b"caf\xe9 \x93quoted\x94</p>"
    assert decode_html(body, "utf-8") == "<p>naïve café “quoted”</p>"


def test_wrong_declaration_falls_back_to_utf8() -> None:
    assert decode_html("<p>日本語</p>".encode(), "iso-8859-2") == "<p>日本語</p>".encode()


def test_byte_order_marks() -> None:
    assert decode_html(codecs.BOM_UTF16_LE + "<p>hé</p>".encode("utf-16-le"), "utf-8") == "<p>hé</p>"
    assert decode_html(codecs.BOM_UTF8 + "<p>hé</p>".encode(), None) == "<p>hé</p>"


def test_utf16_declaration() -> None:
    assert decode_html("<p>hé</p>".encode("utf-16-le"), "UTF-16LE") == "<p>hé</p>"
    assert decode_html("<p>hé</p>".encode("utf-16-le"), "utf-16") == "<p>hé</p>"
    assert decode_html(b"<p>plain</p>", "utf-16") == b"<p>plain</p>"  # a false declaration


def test_binary_body_is_refused() -> None:
    with pytest.raises(CharsetError):
        decode_html(os.urandom(4096), "utf-8")


# --- WHATWG label rules ---------------------------------------------------------------------------------------

# Labels Python has codecs for and no browser knows: decoding with them would read a page no browser shows.
PYTHON_ONLY_LABELS = [
    "cp037",
    "cp273",
    "cp500",
    "cp875",
    "cp1026",
    "cp1140",
    "ebcdic-cp-us",
    "ibm037",
    "utf-32",
    "utf-32-le",
    "utf-7",
    "latin-1",
    "utf-16-le",
    "mac-greek",
    "hex",
    "rot13",
    "punycode",
    "unicode_escape",
]
TEXTS = st.text(st.characters(codec="latin-1", exclude_characters="<>&\"'\x00\r"), min_size=1, max_size=60)


@pytest.mark.parametrize("label", PYTHON_ONLY_LABELS)
def test_labels_browsers_do_not_know_fall_back_and_are_reported(label: str) -> None:
    assert codec_for(label) is None
    utf8 = "<p>naïve — ok</p>".encode()
    decoded = decode_page(utf8, label)
    assert (decoded.text, decoded.unsupported_label) == (utf8, label)
    latin = b'<meta charset="' + label.encode() + b'"><p>caf\xe9</p>'
    decoded = decode_page(latin, None)
    assert "café" in decoded.text and decoded.unsupported_label == label


@settings(max_examples=60, derandomize=True, deadline=None)
@given(label=st.sampled_from(PYTHON_ONLY_LABELS), text=TEXTS)
def test_an_ebcdic_page_is_never_decoded_as_ebcdic(label: str, text: str) -> None:
    """Whatever the bytes, a label outside the standard is read exactly as no label at all, and reported."""
    body = b"<p>" + text.encode("latin-1") + b"</p>"
    decoded = decode_page(body, label)
    assert decoded == Decoded(decode_page(body, None).text, label)
    shown = decoded.text if isinstance(decoded.text, str) else decoded.text.decode()
    assert shown.startswith("<p>") and shown.endswith("</p>")  # as EBCDIC, not even the markup would survive


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    label=st.sampled_from(["utf-16", "UTF-16LE", "utf-16be", "unicode", "ucs-2", "csunicode", "unicodefffe"]),
    text=TEXTS,
)
def test_a_meta_utf16_label_means_utf8(label: str, text: str) -> None:
    """A <meta> read as ASCII cannot be declaring UTF-16: the page is read as UTF-8 (stray bytes as windows-1252),
    never as UTF-16 mojibake without markup."""
    page = b"<p>" + text.encode("cp1252", "replace") + b"</p>"
    decoded = decode_page(b'<meta charset="' + label.encode() + b'">' + page, None)
    as_utf8 = decode_page(b'<meta charset="utf-8">' + page, None)
    assert decoded.unsupported_label is None

    def shown(text: str | bytes) -> str:
        return (text if isinstance(text, str) else text.decode()).split(">", 1)[1]

    assert shown(decoded.text) == shown(as_utf8.text)
    assert shown(decoded.text).startswith("<p>") and shown(decoded.text).endswith("</p>")


@pytest.mark.parametrize("label", ["iso-2022-kr", "csiso2022kr", "hz-gb-2312", "iso-2022-cn", "iso-2022-cn-ext"])
def test_replacement_encodings_leave_no_page(label: str) -> None:
    """The standard decodes these as one U+FFFD (they smuggle markup past filters): a recorded decode error."""
    assert codec_for(label) == "replacement"
    with pytest.raises(CharsetError):
        decode_page(b'<p><img src="a.png" alt="x"></p>', label)


@pytest.mark.parametrize(
    "body", [b"just some text, no tags", "текст без разметки".encode("cp1251"), b"", "\u00e9t\u00e9".encode()]
)
def test_a_page_without_markup_is_refused(body: bytes) -> None:
    with pytest.raises(NoMarkupError):
        decode_page(body, "windows-1251")


def test_every_whatwg_label_names_a_codec_python_has() -> None:
    for label in [*_CODEC_OF_LABEL]:
        codec = codec_for(label.upper())
        assert codec is not None
        if codec not in ("replacement", "x-user-defined"):
            codecs.lookup(codec)


def test_x_user_defined() -> None:
    decoded = decode_page(b"<p>\x80\xff</p>", "x-user-defined")
    assert decoded.text == "<p>\uf780\uf7ff</p>"
    assert decode_page(b'<meta charset="x-user-defined"><p>\x93q\x94</p>').text.endswith("<p>“q”</p>")
