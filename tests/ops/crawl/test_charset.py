"""Decoding HTML bodies whatever encoding they claim."""

from __future__ import annotations

import codecs
import os

import pytest

from ops.crawl.charset import CharsetError, codec_for, decode_html, sniff_meta_charset


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
    assert decode_html("<p>hé</p>".encode("utf-16-le"), "utf-16-le") == "<p>hé</p>"
    assert decode_html(b"<p>plain</p>", "utf-16") == b"<p>plain</p>"  # a false declaration


def test_binary_body_is_refused() -> None:
    with pytest.raises(CharsetError):
        decode_html(os.urandom(4096), "utf-8")
