"""Seed inputs per fuzz target: small valid inputs of every shape the parser knows, plus the hostile ones earlier
tests were built from, so both fuzzers start from deep inside each format instead of from random bytes."""

from __future__ import annotations

import codecs
import gzip
import io
import tarfile
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from tests.conftest import FIXTURES
from tests.ops.bombs import HOSTILE
from tests.ops.crawl.warcs import http_block, raw_record


def _warc() -> list[bytes]:
    page = http_block(b'<html><head><base href="/b/"></head><body><img src="a.png" alt="a cat"></body></html>')
    record = raw_record(page, uri="http://e.com/p")
    wat = raw_record(
        b'{"Envelope": {"Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Links": '
        b'[{"path": "IMG@/src", "url": "/x.png", "alt": "x"}]}}}}}',
        "metadata",
        content_type="application/json",
    )
    chunked = http_block(b"5\r\n<img \r\n0\r\n\r\n", headers="Content-Type: text/html\r\nTransfer-Encoding: chunked")
    coded = http_block(gzip.compress(b"<img src=z alt=z>"), headers="Content-Type: text/html\r\nContent-Encoding: gzip")
    return [
        (FIXTURES / "warc" / "whirlwind.warc.wat.gz").read_bytes(),
        (FIXTURES / "warc" / "resiliparse-clipped.warc.gz").read_bytes()[:6000],
        record + record,
        gzip.compress(record) + gzip.compress(b"") + gzip.compress(wat),
        record[:-40],
        record + b"junk" + raw_record(chunked) + raw_record(coded),
        record.replace(b"Content-Length: ", b"Content-Length: 9", 1) + record,
        b"",
    ]


def _html() -> list[bytes]:
    pages = [
        b'<html><head><meta name="robots" content="otherbot: noai"><base href="//cdn.e.com/"></head>'
        b'<body><img src="a.png" alt="  a\n cat "><img data-src="b.png" title="t"><image src=c alt=c></body>',
        b'<meta charset="utf-16"><img src="/x" alt="caf\xe9">',
        codecs.BOM_UTF16_LE + "<img src=a alt=été>".encode("utf-16-le"),
        "<img src=a alt=Привет>".encode("cp1251"),
        b"<img src=a alt=x>" * 80,
        b"no markup at all",
    ]
    return [bytes([label]) + page for label in (0, 2, 6, 11, 13) for page in pages]


def _urls() -> list[bytes]:
    srcs = [
        "a.png",
        "//cdn.example.com/x.png",
        "http://0x7f.1/a.png",
        "http://2130706433/",
        "http://[::ffff:127.0.0.1]/x",
        "http://[64:ff9b::a00:1]/",
        "http://127.0.0.1./",
        "http://localhost./x",
        "http://ＥＸＡＭＰＬＥ.com/①",
        "http://xn--bcher-kva.example/d.png",
        "https://user:pw@example.com:8443/p?q=1#f",
        "data:image/png;base64,AAAA",
        "javascript:alert(1)",
        "http://a b.com/",
        "\\\\evil.com\\x.png",
        "http://017700000001/",
        "http://0.0.0.0/",
        "http://[::]/",
    ]
    bases = ["", "/sub/", "http://other.example/base/", "https://[::1]/", "http://10.0.0.1/"]
    return [f"{base}\n{src}".encode() for base in bases for src in srcs]


def _images() -> list[bytes]:
    out = []
    pixels = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    for ext in (".bmp", ".jpg", ".png", ".webp", ".ppm", ".pam", ".ras", ".tiff", ".gif"):
        ok, buf = cv2.imencode(ext, pixels)
        if ok:
            out.append(buf.tobytes())
    for ext, image in ((".pfm", pixels.astype(np.float32)), (".hdr", pixels.astype(np.float32) / 255)):
        out.append(cv2.imencode(ext, image)[1].tobytes())
    for fmt in ("ICO", "TGA", "SGI", "PCX", "JPEG2000"):
        buf = io.BytesIO()
        Image.new("RGB", (7, 5)).save(buf, format=fmt)
        out.append(buf.getvalue())
    out += [make(60_000, 60_000) for make in HOSTILE.values()]
    out += [make(30, 20) for make in HOSTILE.values()]
    return out


def _tars() -> list[bytes]:
    out = []
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            names = ["000000000.jpg", "000000000.json", "000000001.syn.txt", "deep/" * 25 + "000000002.jpg"]
            if fmt != tarfile.USTAR_FORMAT:
                names.append("é" * 60 + ".txt")
            for i, name in enumerate(names):
                info = tarfile.TarInfo(name)
                info.size = i * 7
                tf.addfile(info, io.BytesIO(bytes(info.size)))
        out.append(buf.getvalue())
    return out


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "warc_reader": _warc,
    "html_pairs": _html,
    "url_policy": _urls,
    "image_guard": _images,
    "tar_reader": _tars,
}
