"""Turn an HTML body into text the parser can read, whatever the page claims its encoding is.

Labels are read as browsers read them, by the WHATWG Encoding Standard: only its labels name an encoding (so
``cp037``/EBCDIC, ``utf-32`` or ``base64`` name none, although Python has codecs by those names), ``latin1`` and
``ascii`` mean windows-1252, ``gb2312`` means GBK, the ISO-2022-KR/CN family and HZ mean the *replacement*
encoding (the whole document is one U+FFFD: those encodings smuggle markup past filters), and a ``<meta>``
declaration of UTF-16 means UTF-8 (a page whose bytes were read far enough to find an ASCII ``<meta>`` is not
UTF-16) while one of ``x-user-defined`` means windows-1252.

The web lies about encodings too: pages declared ISO-8859-1 serve UTF-8 from their database, pages declared
UTF-8 carry Latin-1 bytes. So, in order:

- a byte order mark decides;
- an HTTP declaration of UTF-16 is believed when the body has NUL bytes (ASCII markup in UTF-16 has them);
- a body that is valid UTF-8 is UTF-8, whatever it declares: valid multi-byte UTF-8 sequences almost never arise
  by chance in text in another encoding (browsers do not do this; it reads mis-declared pages correctly);
- otherwise the declared encoding (HTTP header, else ``<meta>``);
- and bytes that still do not decode are read as UTF-8 whose stray bytes are windows-1252, which reads a UTF-8
  page with a few Latin-1 bytes correctly and an undeclared Latin-1 page entirely correctly. A label the
  standard does not know lands here too, and is reported so the crawl can count it.

A body that is not text at all (an image or archive served as ``text/html``) is refused with
:class:`CharsetError` rather than fed to the parser as mojibake, and so is one whose decoding holds no markup
although its bytes did (a UTF-16 or replacement encoding applied to an ASCII page).
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:+-]{1,40})""", re.IGNORECASE)
_SNIFF_BYTES = 4096
_BINARY_SAMPLE = 64 << 10

REPLACEMENT = "replacement"
USER_DEFINED = "x-user-defined"

# The WHATWG Encoding Standard's labels, by the Python codec that decodes the encoding they name.
_LABELS: dict[str, tuple[str, ...]] = {
    "utf-8": ("unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8"),
    "cp866": ("866", "cp866", "csibm866", "ibm866"),
    "iso8859-2": (
        "csisolatin2",
        "iso-8859-2",
        "iso-ir-101",
        "iso8859-2",
        "iso88592",
        "iso_8859-2",
        "iso_8859-2:1987",
        "l2",
        "latin2",
    ),
    "iso8859-3": (
        "csisolatin3",
        "iso-8859-3",
        "iso-ir-109",
        "iso8859-3",
        "iso88593",
        "iso_8859-3",
        "iso_8859-3:1988",
        "l3",
        "latin3",
    ),
    "iso8859-4": (
        "csisolatin4",
        "iso-8859-4",
        "iso-ir-110",
        "iso8859-4",
        "iso88594",
        "iso_8859-4",
        "iso_8859-4:1988",
        "l4",
        "latin4",
    ),
    "iso8859-5": (
        "csisolatincyrillic",
        "cyrillic",
        "iso-8859-5",
        "iso-ir-144",
        "iso8859-5",
        "iso88595",
        "iso_8859-5",
        "iso_8859-5:1988",
    ),
    "iso8859-6": (
        "arabic",
        "asmo-708",
        "csiso88596e",
        "csiso88596i",
        "csisolatinarabic",
        "ecma-114",
        "iso-8859-6",
        "iso-8859-6-e",
        "iso-8859-6-i",
        "iso-ir-127",
        "iso8859-6",
        "iso88596",
        "iso_8859-6",
        "iso_8859-6:1987",
    ),
    "iso8859-7": (
        "csisolatingreek",
        "ecma-118",
        "elot_928",
        "greek",
        "greek8",
        "iso-8859-7",
        "iso-ir-126",
        "iso8859-7",
        "iso88597",
        "iso_8859-7",
        "iso_8859-7:1987",
        "sun_eu_greek",
    ),
    "iso8859-8": (
        "csiso88598e",
        "csisolatinhebrew",
        "hebrew",
        "iso-8859-8",
        "iso-8859-8-e",
        "iso-ir-138",
        "iso8859-8",
        "iso88598",
        "iso_8859-8",
        "iso_8859-8:1988",
        "visual",
        "csiso88598i",
        "iso-8859-8-i",
        "logical",
    ),
    "iso8859-10": ("csisolatin6", "iso-8859-10", "iso-ir-157", "iso8859-10", "iso885910", "l6", "latin6"),
    "iso8859-13": ("iso-8859-13", "iso8859-13", "iso885913"),
    "iso8859-14": ("iso-8859-14", "iso8859-14", "iso885914"),
    "iso8859-15": ("csisolatin9", "iso-8859-15", "iso8859-15", "iso885915", "iso_8859-15", "l9"),
    "iso8859-16": ("iso-8859-16",),
    "koi8-r": ("cskoi8r", "koi", "koi8", "koi8-r", "koi8_r"),
    "koi8-u": ("koi8-ru", "koi8-u"),
    "mac-roman": ("csmacintosh", "mac", "macintosh", "x-mac-roman"),
    "cp874": ("dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874"),
    "cp1250": ("cp1250", "windows-1250", "x-cp1250"),
    "cp1251": ("cp1251", "windows-1251", "x-cp1251"),
    "cp1252": (
        "ansi_x3.4-1968",
        "ascii",
        "cp1252",
        "cp819",
        "csisolatin1",
        "ibm819",
        "iso-8859-1",
        "iso-ir-100",
        "iso8859-1",
        "iso88591",
        "iso_8859-1",
        "iso_8859-1:1987",
        "l1",
        "latin1",
        "us-ascii",
        "windows-1252",
        "x-cp1252",
    ),
    "cp1253": ("cp1253", "windows-1253", "x-cp1253"),
    "cp1254": (
        "cp1254",
        "csisolatin5",
        "iso-8859-9",
        "iso-ir-148",
        "iso8859-9",
        "iso88599",
        "iso_8859-9",
        "iso_8859-9:1989",
        "l5",
        "latin5",
        "windows-1254",
        "x-cp1254",
    ),
    "cp1255": ("cp1255", "windows-1255", "x-cp1255"),
    "cp1256": ("cp1256", "windows-1256", "x-cp1256"),
    "cp1257": ("cp1257", "windows-1257", "x-cp1257"),
    "cp1258": ("cp1258", "windows-1258", "x-cp1258"),
    "mac-cyrillic": ("x-mac-cyrillic", "x-mac-ukrainian"),
    "gb18030": (
        "chinese",
        "csgb2312",
        "csiso58gb231280",
        "gb2312",
        "gb_2312",
        "gb_2312-80",
        "gbk",
        "iso-ir-58",
        "x-gbk",
        "gb18030",
    ),
    "big5hkscs": ("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"),
    "euc_jp": ("cseucpkdfmtjapanese", "euc-jp", "x-euc-jp"),
    "iso2022_jp": ("csiso2022jp", "iso-2022-jp"),
    "cp932": ("csshiftjis", "ms932", "ms_kanji", "shift-jis", "shift_jis", "sjis", "windows-31j", "x-sjis"),
    "cp949": (
        "cseuckr",
        "csksc56011987",
        "euc-kr",
        "iso-ir-149",
        "korean",
        "ks_c_5601-1987",
        "ks_c_5601-1989",
        "ksc5601",
        "ksc_5601",
        "windows-949",
    ),
    REPLACEMENT: ("csiso2022kr", "hz-gb-2312", "iso-2022-cn", "iso-2022-cn-ext", "iso-2022-kr", "replacement"),
    "utf-16-be": ("unicodefffe", "utf-16be"),
    "utf-16-le": ("csunicode", "iso-10646-ucs-2", "ucs-2", "unicode", "unicodefeff", "utf-16", "utf-16le"),
    USER_DEFINED: ("x-user-defined",),
}
_CODEC_OF_LABEL = {label: codec for codec, labels in _LABELS.items() for label in labels}
_STRIP = "\t\n\f\r \"'"  # what the standard trims around a label (ASCII whitespace), and stray quotes

# Bytes below 0x20 that never occur in text, other than tab, newline, form feed and carriage return.
_CONTROL_BYTES = bytes(b for b in range(0x20) if b not in (0x09, 0x0A, 0x0C, 0x0D))
# Bytes that failed UTF-8 come back as lone surrogates U+DC80..U+DCFF; read each as windows-1252
# (the five bytes windows-1252 leaves undefined map to the C1 control of the same value, as browsers do).
_STRAY_AS_CP1252 = {
    0xDC00 + b: bytes([b]).decode("cp1252", "replace").replace("\ufffd", chr(b)) for b in range(0x80, 0x100)
}
# x-user-defined: ASCII as is, every other byte to U+F780 + (byte - 0x80).
_USER_DEFINED = {b: 0xF700 + b for b in range(0x80, 0x100)}


class CharsetError(ValueError):
    """The body is not text in any encoding we would believe."""


class NoMarkupError(CharsetError):
    """The body is text, but holds no markup at all: not a page."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded page: ``text`` (the original ``bytes`` when they are valid UTF-8, which the parser reads without
    a copy) and the declared label the standard does not know, if one was ignored."""

    text: str | bytes
    unsupported_label: str | None = None


@functools.lru_cache(maxsize=512)
def codec_for(label: str | None) -> str | None:
    """The Python codec (or :data:`REPLACEMENT` / :data:`USER_DEFINED`) a WHATWG label names; None for any other
    label."""
    if not label:
        return None
    return _CODEC_OF_LABEL.get(label.strip(_STRIP).lower())


def sniff_meta_charset(body: bytes) -> str | None:
    """The charset of the first ``<meta charset>`` or http-equiv declaration near the top of the document."""
    match = _META_CHARSET.search(body, 0, _SNIFF_BYTES)
    return match.group(1).decode("ascii") if match else None


def looks_binary(body: bytes) -> bool:
    """More than 1% control bytes in the first 64 KiB: no HTML page looks like that, compressed or binary data does."""
    sample = body[:_BINARY_SAMPLE]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > max(8, len(sample) // 100)


def _with(codec: str, body: bytes) -> str:
    if codec == REPLACEMENT:
        return "\ufffd" if body else ""
    if codec == USER_DEFINED:
        return body.decode("latin-1").translate(_USER_DEFINED)
    return body.decode(codec, "replace")


def _meta_codec(label: str | None) -> str | None:
    """The codec a ``<meta>`` label names, with the standard's two corrections for labels found by an ASCII scan."""
    codec = codec_for(label)
    if codec is not None and codec.startswith("utf-16"):
        return "utf-8"
    if codec == USER_DEFINED:
        return "cp1252"
    return codec


def _markup(text: str | bytes, body: bytes, unsupported: str | None) -> Decoded:
    """``text`` as the result, unless it holds no markup: decoding destroyed it (:class:`CharsetError`) or there
    never was any (:class:`NoMarkupError`)."""
    if ("<" if isinstance(text, str) else b"<") not in text:
        if b"<" in body:
            raise CharsetError("the decoded page holds no markup, its bytes did")
        raise NoMarkupError("the page holds no markup")
    return Decoded(text, unsupported)


def decode_page(body: bytes, declared: str | None = None) -> Decoded:
    """The document, from its bytes and the HTTP header's charset (``declared``; the ``<meta>`` one is sniffed here).

    Raises :class:`CharsetError` when the body is binary or decodes to no markup although its bytes held some,
    and :class:`NoMarkupError` when it holds none at all.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return _markup(body[len(bom) :].decode(name, "replace"), body, None)
    codec = codec_for(declared)
    unsupported = declared if declared and declared.strip(_STRIP) and codec is None else None
    if codec is not None and codec.startswith("utf-16"):
        if b"\x00" in body[:1024]:  # only then can a UTF-16 declaration be true
            return _markup(body.decode(codec, "replace"), body, unsupported)
        codec = None
    if looks_binary(body):
        raise CharsetError("control bytes in an HTML body")
    if codec is None:
        meta = sniff_meta_charset(body)
        codec = _meta_codec(meta)
        if meta and codec is None:
            unsupported = unsupported or meta
    if codec in (REPLACEMENT, USER_DEFINED, "iso2022_jp"):  # not ASCII-compatible: decoded even when ASCII
        return _markup(_with(codec, body), body, unsupported)
    if body.isascii():
        return _markup(body, body, unsupported)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return _markup(body, body, unsupported)
    if codec is not None and codec != "utf-8":
        try:
            return _markup(body.decode(codec), body, unsupported)
        except UnicodeDecodeError:
            pass
        text = body.decode(codec, "replace")
        if text.count("\ufffd") <= max(8, len(text) // 100):
            return _markup(text, body, unsupported)
    return _markup(body.decode("utf-8", "surrogateescape").translate(_STRAY_AS_CP1252), body, unsupported)
