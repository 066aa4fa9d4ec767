"""Find the candidate pairs of a page in a CommonCrawl WAT metadata record.

WAT files are about a third of the size of WARC files and already parsed, which makes them the cheap way over a
whole crawl (MetaCLIP and cc2dataset read them); they lose about 1% of pairs against the HTML. The layout:
``Envelope → Payload-Metadata → HTTP-Response-Metadata → HTML-Metadata → Links``, image links having a ``path``
starting with ``IMG@/src``; ``Head → Base`` and ``Head → Metas`` beside the links; the HTTP headers under
``HTTP-Response-Metadata → Headers``; the page URL under ``Envelope → WARC-Header-Metadata``.

The JSON is someone else's output, so every level is type-checked, and strings are made encodable (JSON may
escape lone surrogates, which no parquet writer accepts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ops.crawl.html import PageImages, pick_text
from ops.crawl.urls import clean_src
from ops.optout import ROBOTS_META_NAMES, opts_out


class WatError(ValueError):
    """A WAT record that is not valid JSON."""


@dataclass(slots=True)
class WatPage:
    """A WAT record about an HTML response: its page URL, HTTP status (None when absent) and candidates."""

    page_url: str
    status: int | None
    page: PageImages


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _header_values(headers: dict, name: str) -> list[str]:
    out = []
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            out.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    return out


def parse_wat(body: bytes, max_rows: int | None = None) -> WatPage | None:
    """The page described by one WAT JSON record, or None when the record describes no HTML response. Image links
    past the first ``max_rows`` are counted, not listed.

    Raises :class:`WatError` when the body is not JSON.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WatError(str(exc)) from exc
    envelope = _dict(_dict(doc).get("Envelope"))
    response = _dict(_dict(envelope.get("Payload-Metadata")).get("HTTP-Response-Metadata"))
    html = response.get("HTML-Metadata")
    if not isinstance(html, dict):
        return None
    status_text = _dict(response.get("Response-Message")).get("Status")
    try:
        status = int(status_text) if status_text is not None else None
    except (TypeError, ValueError):
        status = -1
    head = _dict(html.get("Head"))
    page = PageImages()
    base = head.get("Base")
    page.base_href = _str(base) if isinstance(base, str) else None
    metas = head.get("Metas")
    robots = _header_values(_dict(response.get("Headers")), "x-robots-tag")
    for item in metas if isinstance(metas, list) else ():
        meta = _dict(item)
        name = meta.get("name") or meta.get("http-equiv")
        if isinstance(name, str) and name.strip().lower() in ROBOTS_META_NAMES:
            robots.append(_str(meta.get("content")))
    page.opt_out = opts_out(robots)
    links = html.get("Links")
    for link in links if isinstance(links, list) else ():
        if not isinstance(link, dict):
            continue
        path = link.get("path")
        if not (isinstance(path, str) and path.startswith("IMG@/src")):
            continue
        if max_rows is not None and len(page.images) >= max_rows:
            page.unlisted += 1
            continue
        text, source = pick_text(lambda name, link=link: _str(link.get(name)))
        page.images.append((clean_src(_str(link.get("url"))), text, source))
    page_url = _str(_dict(envelope.get("WARC-Header-Metadata")).get("WARC-Target-URI")).strip().strip("<>")
    return WatPage(page_url=page_url, status=status, page=page)
