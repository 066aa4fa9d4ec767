"""Test helpers: the real fixtures, tiny WARCs written with warcio, and independent readings made with
warcio + BeautifulSoup (none of them use the code under test)."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bs4 import BeautifulSoup
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from tests.conftest import FIXTURES as FIXTURES  # the crawl tests take it from here
from tests.conftest import REPO as REPO

WARC_FIXTURES = ("resiliparse-commoncrawl.warc.gz", "sample-0000.warc.gz", "sample-0001.warc.gz", "whirlwind.warc.gz")
TEXT_ATTRIBUTES = ("alt", "title", "data-image-title")
# The WHATWG Encoding Standard, which browsers follow, decodes these labels with a superset codec.
WHATWG_LABELS = {"gb2312": "gb18030", "gbk": "gb18030", "iso-8859-1": "windows-1252", "us-ascii": "windows-1252"}


@dataclass
class Page:
    """One HTTP response to write into a test WARC."""

    url: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("Content-Type", "text/html; charset=utf-8")])
    status: str = "200 OK"


def html_page(url: str, html: str, **kwargs) -> Page:
    return Page(url, html.encode("utf-8"), **kwargs)


def write_warc(path: Path, pages: Iterable[Page], compress: bool = True, with_requests: bool = True) -> Path:
    """A WARC with a warcinfo record and, per page, a request and a response record (as crawlers write them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        writer = WARCWriter(f, gzip=compress)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "tests"}))
        for page in pages:
            if with_requests:
                request = StatusAndHeaders(f"GET {page.url} HTTP/1.1", [("Host", "test")], is_http_request=True)
                writer.write_record(writer.create_warc_record(page.url, "request", http_headers=request))
            http = StatusAndHeaders(page.status, page.headers, protocol="HTTP/1.1")
            record = writer.create_warc_record(
                page.url, "response", payload=io.BytesIO(page.body), length=len(page.body), http_headers=http
            )
            writer.write_record(record)
    return path


def raw_record(block: bytes, record_type: str = "response", uri: str = "http://example.com/", **extra: str) -> bytes:
    """One uncompressed WARC record written by hand, for records warcio would refuse to write."""
    content_type = extra.pop("content_type", "application/http; msgtype=response")
    headers = [
        "WARC/1.0",
        f"WARC-Type: {record_type}",
        f"WARC-Target-URI: {uri}",
        "WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000000>",
        "WARC-Date: 2024-01-01T00:00:00Z",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(block)}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def gzip_members(records: Iterable[bytes]) -> bytes:
    """Each record as its own gzip member, as WARC files are compressed."""
    return b"".join(gzip.compress(r) for r in records)


def http_block(body: bytes, headers: str = "Content-Type: text/html; charset=utf-8", status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}\r\n\r\n".encode() + body


@dataclass
class HtmlResponse:
    url: str
    headers: StatusAndHeaders
    body: bytes

    @property
    def charset(self) -> str | None:
        content_type = self.headers.get_header("Content-Type") or ""
        for param in content_type.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                label = value.strip().strip("\"'").lower()
                return WHATWG_LABELS.get(label, label)
        return None

    def soup(self) -> BeautifulSoup:
        return BeautifulSoup(self.body, "html.parser", from_encoding=self.charset)


def html_responses(path: Path) -> Iterator[HtmlResponse]:
    """The HTML 200 responses of a WARC, bodies decoded from their transfer and content codings (warcio)."""
    with path.open("rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type != "response" or record.http_headers is None:
                continue
            if record.http_headers.get_statuscode() != "200":
                continue
            if "html" not in (record.http_headers.get_header("Content-Type") or "").lower():
                continue
            url = record.rec_headers.get_header("WARC-Target-URI")
            yield HtmlResponse(url, record.http_headers, record.content_stream().read())


def text_of(img) -> str:
    for name in TEXT_ATTRIBUTES:
        value = img.get(name)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return ""


def count_imgs_with_text(path: Path) -> int:
    """``<img>`` tags with non-blank alt/title/data-image-title text in the HTML 200 responses of a WARC."""
    return sum(1 for page in html_responses(path) for img in page.soup().find_all("img") if text_of(img))


def wat_json(page: HtmlResponse) -> dict:
    """A CommonCrawl-layout WAT metadata JSON for one HTML response, made with BeautifulSoup."""
    soup = page.soup()
    links = []
    for img in soup.find_all("img"):
        src = img.get("src")
        if src is None:
            continue
        link = {"path": "IMG@/src", "url": src}
        link.update({k: img[k] for k in TEXT_ATTRIBUTES if isinstance(img.get(k), str)})
        links.append(link)
    head: dict = {
        "Metas": [
            {"name": m["name"], "content": m.get("content", "")} for m in soup.find_all("meta", attrs={"name": True})
        ]
    }
    base = soup.find("base", href=True)
    if base is not None:
        head["Base"] = base["href"]
    return {
        "Container": {"Filename": "test.warc.gz", "Compressed": True},
        "Envelope": {
            "Format": "WARC",
            "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": page.url},
            "Payload-Metadata": {
                "Actual-Content-Type": "application/http; msgtype=response",
                "HTTP-Response-Metadata": {
                    "Response-Message": {"Status": "200", "Version": "HTTP/1.1", "Reason": "OK"},
                    "Headers": dict(page.headers.headers),
                    "HTML-Metadata": {"Head": head, "Links": links},
                },
            },
        },
    }


def write_wat(path: Path, documents: Iterable[tuple[str, dict]]) -> Path:
    """A gzipped WAT file: a warcinfo record, then one ``application/json`` metadata record per document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        writer = WARCWriter(f, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "tests"}))
        for url, doc in documents:
            payload = json.dumps(doc).encode("utf-8")
            record = writer.create_warc_record(
                url, "metadata", payload=io.BytesIO(payload), length=len(payload), warc_content_type="application/json"
            )
            writer.write_record(record)
    return path


def request_wat_json(url: str) -> dict:
    """The WAT JSON of a request record: no HTML-Metadata, so nothing to crawl."""
    return {
        "Envelope": {
            "WARC-Header-Metadata": {"WARC-Type": "request", "WARC-Target-URI": url},
            "Payload-Metadata": {"HTTP-Request-Metadata": {"Request-Message": {"Method": "GET"}}},
        }
    }
