"""Turn an HTML body into text the parser can read, whatever the page claims its encoding is.

The web lies about encodings: pages declared ISO-8859-1 serve UTF-8 from their database, pages declared UTF-8
carry Latin-1 bytes, "ISO-8859-1" pages are really windows-1252, "gb2312" pages use GBK characters. So:

- a byte order mark decides;
- a body that is valid UTF-8 is UTF-8, whatever it declares: valid multi-byte UTF-8 sequences almost never
  arise by chance in text in another encoding;
- otherwise the declared charset (HTTP header, else ``<meta>``), with the WHATWG label mapping browsers use;
- and bytes that still do not decode are read as UTF-8 whose stray bytes are windows-1252, which reads a UTF-8
  page with a few Latin-1 bytes correctly and an undeclared Latin-1 page entirely correctly.

A body that is not text at all (an image or archive served as ``text/html``) is refused with
:class:`CharsetError` rather than fed to the parser as mojibake.
"""

from __future__ import annotations

import codecs
import functools
import re

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:+-]{1,40})""", re.IGNORECASE)
_SNIFF_BYTES = 4096
_BINARY_SAMPLE = 64 << 10

# WHATWG Encoding Standard labels whose Python codec differs from the label's name.
_WHATWG = {
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-9": "cp1254",
    "latin5": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "chinese": "gb18030",
    "csgb2312": "gb18030",
    "big5": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "unicode-1-1-utf-8": "utf-8",
    "x-unicode20utf8": "utf-8",
    "utf8": "utf-8",
}

# Bytes below 0x20 that never occur in text, other than tab, newline, form feed and carriage return.
_CONTROL_BYTES = bytes(b for b in range(0x20) if b not in (0x09, 0x0A, 0x0C, 0x0D))
# Bytes that failed UTF-8 come back as lone surrogates U+DC80..U+DCFF; read each as windows-1252
# (the five bytes windows-1252 leaves undefined map to the C1 control of the same value, as browsers do).
_STRAY_AS_CP1252 = {
    0xDC00 + b: bytes([b]).decode("cp1252", "replace").replace("\ufffd", chr(b)) for b in range(0x80, 0x100)
}


class CharsetError(ValueError):
    """The body is not text in any encoding we would believe."""


@functools.lru_cache(maxsize=512)
def codec_for(label: str | None) -> str | None:
    """The Python codec for a charset label, or None when the label names no text encoding we know."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _WHATWG.get(name, name)
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    try:
        b"x".decode(info.name)  # refuses bytes-to-bytes codecs (hex, base64, zlib) that lookup() accepts
    except UnicodeDecodeError:
        pass
    except LookupError:
        return None
    return "utf-8" if info.name == "utf-8" else info.name


def sniff_meta_charset(body: bytes) -> str | None:
    """The charset of the first ``<meta charset>`` or http-equiv declaration near the top of the document."""
    match = _META_CHARSET.search(body, 0, _SNIFF_BYTES)
    return match.group(1).decode("ascii") if match else None


def looks_binary(body: bytes) -> bool:
    """More than 1% control bytes in the first 64 KiB: no HTML page looks like that, compressed or binary data does."""
    sample = body[:_BINARY_SAMPLE]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > max(8, len(sample) // 100)


def decode_html(body: bytes, declared: str | None = None) -> str | bytes:
    """The document as ``str``, or as the original ``bytes`` when they are valid UTF-8 (the parser reads those
    without a copy). ``declared`` is the HTTP header's charset; the ``<meta>`` one is sniffed here.

    Raises :class:`CharsetError` when the body is binary.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, "replace")
    if b"\x00" in body[:1024]:  # only then can a UTF-16/32 declaration be true
        codec = codec_for(declared)
        if codec is not None and codec.startswith(("utf-16", "utf-32")):
            return body.decode(codec, "replace")
    if looks_binary(body):
        raise CharsetError("control bytes in an HTML body")
    if body.isascii():
        return body
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return body
    codec = codec_for(declared) or codec_for(sniff_meta_charset(body))
    if codec is not None and codec != "utf-8":
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            pass
        text = body.decode(codec, "replace")
        if text.count("\ufffd") <= max(8, len(text) // 100):
            return text
    return body.decode("utf-8", "surrogateescape").translate(_STRAY_AS_CP1252)
