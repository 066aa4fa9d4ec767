"""The WAT file Common Crawl publishes beside a WARC file, made from the WARC, for pages whose real WAT we lack.

Common Crawl derives its WAT files from its WARC files with ia-web-commons. This writes the same layout from the
same facts, so that the WAT-first crawl can be tested and measured against the WARC crawl on the same pages:

* one gzip member per record, a ``warcinfo`` record first, then one ``metadata`` record (``application/json``)
  per WARC record, request and metadata records included;
* ``Envelope → WARC-Header-Metadata`` (the record's WARC headers) and ``Payload-Metadata``; for an HTTP response
  ``HTTP-Response-Metadata`` with the status line and headers, and for an HTML 200 response ``HTML-Metadata``:
  ``Head`` (``Title``, ``Base``, ``Metas`` with name/http-equiv/property/content, ``Link``, ``Scripts``) and
  ``Links`` in document order;
* what the extractor keeps of an image: ``IMG@/src`` with ``alt`` and ``title`` when present, nothing for an
  ``<img>`` without ``src``, no ``data-src`` and no ``data-image-title``; anchors as ``A@/href`` with up to 128
  characters of their text; entities decoded.

It fills fewer bookkeeping fields than Common Crawl's (digests, gzip offsets), so its records are a little
smaller than theirs; the byte counts of a benchmark are a lower bound for real WAT.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

from fastwarc import ArchiveIterator, WarcRecord, WarcRecordType
from selectolax.lexbor import LexborHTMLParser

from ops.crawl.charset import CharsetError, decode_page
from ops.crawl.records import read_record

_ANCHOR_TEXT = 128
_LINK_TAGS = {"iframe": "src", "frame": "src", "embed": "src", "form": "action", "area": "href"}


def _head(tree: LexborHTMLParser) -> dict:
    head: dict = {}
    title = tree.css_first("title")
    if title is not None:
        head["Title"] = " ".join(title.text().split())
    base = next((n.attrs.get("href") for n in tree.tags("base") if n.attrs.get("href") is not None), None)
    if base is not None:
        head["Base"] = base
    metas = []
    for node in tree.tags("meta"):
        entry = {k: v for k in ("name", "http-equiv", "property", "rel", "content") if (v := node.attrs.get(k))}
        if entry:
            metas.append(entry)
    if metas:
        head["Metas"] = metas
    links = [_with(node, "LINK@/href", "href", ("rel", "type")) for node in tree.tags("link")]
    if links := [link for link in links if link]:
        head["Link"] = links
    scripts = [_with(node, "SCRIPT@/src", "src", ("type",)) for node in tree.tags("script")]
    if scripts := [s for s in scripts if s]:
        head["Scripts"] = scripts
    return head


def _with(node, path: str, url_attr: str, extra: tuple[str, ...]) -> dict | None:
    """A link entry: the path, the URL attribute's value, and those of ``extra`` the tag has."""
    url = node.attrs.get(url_attr)
    if url is None:
        return None
    entry = {"path": path, "url": url}
    entry.update({k: v for k in extra if (v := node.attrs.get(k)) is not None})
    return entry


def html_metadata(markup: str) -> dict:
    """``HTML-Metadata`` of one page: its head and its links in document order."""
    tree = LexborHTMLParser(markup)
    links = []
    root = tree.root
    for node in root.traverse() if root is not None else ():
        tag = node.tag
        if tag == "img":
            links += [e for e in (_with(node, "IMG@/src", "src", ("alt", "title")),) if e]
        elif tag == "a":
            entry = _with(node, "A@/href", "href", ("title", "rel", "target"))
            if entry:
                text = " ".join(node.text().split())[:_ANCHOR_TEXT]
                links.append(entry | ({"text": text} if text else {}))
        elif tag in _LINK_TAGS:
            links += [e for e in (_with(node, f"{tag.upper()}@/{_LINK_TAGS[tag]}", _LINK_TAGS[tag], ()),) if e]
    return {"Head": _head(tree), "Links": links}


def _payload(record: WarcRecord) -> dict:
    if record.record_type == WarcRecordType.response and record.is_http:
        http = record.http_headers
        status = http.status_code
        response = {
            "Response-Message": {"Version": "HTTP/1.1", "Status": str(status), "Reason": http.reason_phrase or ""},
            "Headers": http.asdict(),
        }
        if status == 200:
            page = read_record(record)
            if page.status == "page" and page.kind == "html":
                with contextlib.suppress(CharsetError):  # a page no charset decodes gets no HTML metadata
                    response["HTML-Metadata"] = html_metadata(decode_page(page.body, page.charset).text)
        return {"Actual-Content-Type": "application/http; msgtype=response", "HTTP-Response-Metadata": response}
    if record.record_type == WarcRecordType.request and record.is_http:
        return {
            "Actual-Content-Type": "application/http; msgtype=request",
            "HTTP-Request-Metadata": {"Headers": record.http_headers.asdict()},
        }
    return {"Actual-Content-Type": record.headers.get("Content-Type") or ""}


def wat_documents(warc: Path) -> Iterator[tuple[str, str, dict]]:
    """(target URI, WARC record id, WAT JSON) for every record of a WARC file."""
    with warc.open("rb") as f:
        for record in ArchiveIterator(f, parse_http=True):
            headers = record.headers.asdict()
            doc = {
                "Container": {"Filename": warc.name, "Compressed": warc.suffix == ".gz"},
                "Envelope": {
                    "Format": "WARC",
                    "WARC-Header-Metadata": headers,
                    "Payload-Metadata": _payload(record),
                },
            }
            yield headers.get("WARC-Target-URI", ""), headers.get("WARC-Record-ID", ""), doc


def _member(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    lines = ["WARC/1.0", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(payload)}"]
    return gzip.compress(("\r\n".join(lines) + "\r\n\r\n").encode() + payload + b"\r\n\r\n")


def write_wat(warc: Path, wat: Path) -> Path:
    """Write the WAT of ``warc`` to ``wat`` (gzip members, as Common Crawl's ``.warc.wat.gz``)."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, str(warc.name))
    with wat.open("wb") as out:
        info = f"software: clipfoundry infra.synthetic.wat\r\nformat: WAT of {warc.name}\r\n".encode()
        out.write(_member([("WARC-Type", "warcinfo"), ("Content-Type", "application/warc-fields")], info))
        for k, (uri, refers_to, doc) in enumerate(wat_documents(warc)):
            headers = [
                ("WARC-Type", "metadata"),
                ("WARC-Target-URI", uri),
                ("WARC-Record-ID", f"<urn:uuid:{uuid.uuid5(namespace, str(k))}>"),
                ("WARC-Refers-To", refers_to),
                ("Content-Type", "application/json"),
            ]
            out.write(_member(headers, json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")))
    return wat
