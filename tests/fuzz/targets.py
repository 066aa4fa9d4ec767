"""The fuzz targets: one function per parser that meets untrusted bytes, taking raw bytes and asserting the
parser's invariants. Hypothesis drives them in ``test_targets.py`` (bounded, in ``make test``), Atheris drives
them coverage-guided in ``run.py`` (``make fuzz``), and every input that ever broke one is replayed by
``test_crashers.py``.

An invariant broken is an ``AssertionError``; any other exception escaping a target is a bug of its own (the
parsers promise to record damage, never to raise on it).
"""

from __future__ import annotations

import io
import ipaddress
import socket
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
from PIL import Image

from ops.crawl.books import read_problems
from ops.crawl.charset import CharsetError, NoMarkupError, decode_page
from ops.crawl.framing import ReadTotals
from ops.crawl.html import TEXT_ATTRIBUTES, extract_html, normalize_text
from ops.crawl.reasons import PAIR_REASONS, RECORD_FAILURES
from ops.crawl.records import iter_warc
from ops.crawl.urls import UrlPolicy, clean_src
from ops.image_size import header_size
from ops.netpolicy import AddressPolicy
from ops.pixel_limit import PixelLimit, image_size
from ops.tarscan import CorruptTar, iter_samples, sample_keys
from tests.ops.crawl.crawling import record_books

Target = Callable[[bytes], None]
TARGETS: dict[str, Target] = {}

# Charset labels a page may declare: WHATWG ones, ones only Python knows, junk.
LABELS = (None, "utf-8", "windows-1252", "iso-8859-1", "gb2312", "shift_jis", "utf-16", "utf-16be", "iso-2022-jp")
LABELS += ("iso-2022-kr", "x-user-defined", "cp037", "utf-32", "utf-7", "base64", "", "\x00")
MAX_ROWS = 50
PIXELS = 4096
_PILLOW_AGREES = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"GIF8", b"BM")
_PILLOW_BMP_HEADERS = {n.to_bytes(4, "little") for n in (12, 40, 52, 56, 64, 108, 124)}
PAGE = "http://example.com/dir/page.html"
_POLICY = AddressPolicy()


def target(fn: Target) -> Target:
    TARGETS[fn.__name__] = fn
    return fn


@target
def warc_reader(data: bytes) -> None:
    """Every record and skipped span comes out once, from the vocabulary, and the books (bytes and records) add up
    whatever the bytes: nothing is lost without a reason."""
    totals = ReadTotals()
    records = list(iter_warc(lambda: io.BytesIO(data), totals))
    assert records, "a file read without a single outcome"
    for record in records:
        assert record.status in ("page", "ignored", "failed"), record.status
        if record.status == "failed":
            assert record.reason in RECORD_FAILURES, record.reason
        assert not record.damage or record.damage in RECORD_FAILURES, record.damage
        if record.status == "page":
            assert record.kind in ("html", "wat")
    assert read_problems(record_books(records, totals)) == []


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@target
def html_pairs(data: bytes) -> None:
    """A page decodes (or is refused with a reason) and yields at most ``MAX_ROWS`` candidates, every string of
    which a parquet file can hold; text is normalised and names the attribute it came from."""
    label = LABELS[data[0] % len(LABELS)] if data else None
    body = data[1:]
    try:
        decoded = decode_page(body, label)
    except NoMarkupError:
        assert b"<" not in body, "refused as holding no markup"
        return
    except CharsetError:
        return
    if isinstance(decoded.text, bytes):
        decoded.text.decode("utf-8")  # the parser reads bytes as UTF-8: they must be
    else:
        assert _encodable(decoded.text)
    page = extract_html(decoded.text, MAX_ROWS)
    assert len(page.images) <= MAX_ROWS and page.unlisted >= 0
    for src, text, source in page.images:
        assert _encodable(src) and _encodable(text)
        assert text == normalize_text(text)
        assert (source in TEXT_ATTRIBUTES) if text else source == ""
    assert page.base_href is None or _encodable(page.base_href)


def _numeric_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a resolver would connect to for a numeric host, read independently of ``ops.crawl.urls``:
    ``ipaddress`` for canonical forms, glibc's ``inet_aton`` for every legacy IPv4 spelling."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError, UnicodeEncodeError):
        return None


@target
def url_policy(data: bytes) -> None:
    """An image URL resolved against a page and a ``<base href>``: the verdict is from the vocabulary, and a URL
    let through is http(s), within the length limit, resolves to itself, and never names a refused address in any
    spelling a resolver accepts."""
    text = data.decode("utf-8", "replace")
    base_href, _, src = text.partition("\n")
    policy = UrlPolicy((), 200)
    base = policy.base_for(PAGE, base_href or None)
    src = clean_src(src)
    if not src:
        return
    url, reason = policy.resolve(src, base)
    assert reason == "" or reason in PAIR_REASONS, reason
    if reason:
        return
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https") and parts.hostname, url
    assert len(url) <= 200
    host = parts.hostname
    assert host.isascii(), url
    ip = _numeric_address(host)
    assert ip is None or not _POLICY.is_blocked(ip), f"refused address let through: {url}"
    name = host.rstrip(".")
    assert name != "localhost" and not name.endswith(".localhost"), url
    assert policy.resolve(url, "") == (url, ""), "a resolved URL resolves differently again"


class _Resizer:
    def __init__(self) -> None:
        self.called = False

    def __call__(self, stream: Any, _boxes: Any = None) -> tuple:
        self.called = True
        return b"resized", 1, 1, 1, 1, None


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # Pillow refuses it, or knows no such format: nothing to agree with
        return None


@target
def image_guard(data: bytes) -> None:
    """The header reader never raises and agrees with Pillow on the formats it claims to (JPEG, PNG, GIF, WebP and
    the BMP headers Pillow knows); the guard hands the decoder only images whose size it read within the limit,
    and OpenCV never decodes one of those to more pixels than the limit."""
    size = header_size(data)
    assert size is None or (size[0] > 0 and size[1] > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about big claimed sizes, which is the point here
        unusual_bmp = data[:2] == b"BM" and data[14:18] not in _PILLOW_BMP_HEADERS  # read as OpenCV reads it
        if size is not None and data.startswith(_PILLOW_AGREES) and not unusual_bmp:
            pillow = _pillow_size(data)
            assert pillow is None or size == pillow, (size, pillow)
        resizer = _Resizer()
        result = PixelLimit(resizer, PIXELS)(io.BytesIO(data))
        if not resizer.called:
            assert result[0] is None and result[5]
            return
        read = image_size(data, io.BytesIO(data))
        assert read is not None and read[0] * read[1] <= PIXELS, read
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return
    assert decoded is None or decoded.shape[0] * decoded.shape[1] <= PIXELS, (decoded.shape, read)


@target
def tar_reader(data: bytes) -> None:
    """A tar streams whole or raises ``CorruptTar``; when it streams, the header-only counter finds the same
    samples."""
    try:
        samples = list(iter_samples(io.BytesIO(data), "fuzz.tar"))
    except CorruptTar:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.tar"
        path.write_bytes(data)
        assert sample_keys(path) == {key for key, _ in samples}
