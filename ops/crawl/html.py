"""Find the candidate image-text pairs of an HTML page: every ``<img>``, with its text and source as written.

Lexbor (through selectolax) parses the way browsers do, so ``<img>`` inside ``<noscript>`` counts, markup inside
``<script>`` does not, and broken or truncated markup still yields the tags before the damage. Nothing is judged
here; the shard decides what to keep.

A page may hold hundreds of thousands of ``<img>`` tags in a few kilobytes of gzip, and a parse tree (and a list
of candidates) grows with every one of them. So past ``max_rows`` tags the rest are cut out of the markup before
it is parsed and only counted (:attr:`PageImages.unlisted`): memory stays flat in the number of tags, and the
``<base>`` and robots ``<meta>`` tags after them are still seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

from selectolax.lexbor import LexborHTMLParser

from ops.crawl.urls import clean_src
from ops.optout import ROBOTS_META_NAMES, opts_out

TEXT_ATTRIBUTES = ("alt", "title", "data-image-title")

# (src, text, text_source): the cleaned source URL as written ("" when none), the whitespace-normalised text
# ("" when none) and the attribute it came from ("" when none).
Candidate = tuple[str, str, str]
Getter = Callable[[str], object]  # an attribute lookup: a selectolax node's, or a WAT link's


@dataclass(slots=True)
class PageImages:
    """What one page offers: its images in document order, its ``<base href>``, and whether it opts out."""

    images: list[Candidate] = field(default_factory=list)
    base_href: str | None = None
    opt_out: bool = False
    unlisted: int = 0  # image tags past the row cap: counted, not listed


def normalize_text(value: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(value.split())


def pick_text(get: Getter) -> tuple[str, str]:
    """``(text, source)`` from the first of alt, title, data-image-title that holds more than whitespace.

    An empty ``alt`` marks a decorative image, but a title on it still describes it, so the fallback applies.
    """
    for name in TEXT_ATTRIBUTES:
        value = get(name)
        if value and isinstance(value, str):
            text = normalize_text(value)
            if text:
                return text, name
    return "", ""


def pick_src(get: Getter) -> str:
    """``src``, or ``data-src`` when ``src`` is missing, blank, or an inline placeholder of a lazy-loaded image."""
    src = _attr(get, "src")
    if not src or src[:5].lower() == "data:":
        lazy = _attr(get, "data-src")
        if lazy:
            return lazy
    return src


def _attr(get: Getter, name: str) -> str:
    value = get(name)
    return clean_src(value) if isinstance(value, str) else ""


# An image start tag as the tokenizer sees it: ``<img`` or ``<image`` (which the parser turns into an img).
_IMG = r"<im(?:g|age)(?=[\t\n\f\r />]|$)"
_IMG_BYTES = re.compile(_IMG.encode(), re.IGNORECASE)
_IMG_TEXT = re.compile(_IMG, re.IGNORECASE)
_IMG_TAG_BYTES = re.compile(_IMG.encode() + rb"[^>]*>?", re.IGNORECASE)
_IMG_TAG_TEXT = re.compile(_IMG + r"[^>]*>?", re.IGNORECASE)


def _without_images_after(markup: str | bytes, max_rows: int) -> tuple[str | bytes, int]:
    """The markup with every ``<img>`` tag after the first ``max_rows`` taken out, and how many were.

    Counted in the raw markup, so a tag inside a comment or script counts too: the number is an upper bound.
    """
    finder, tags = (_IMG_BYTES, _IMG_TAG_BYTES) if isinstance(markup, bytes) else (_IMG_TEXT, _IMG_TAG_TEXT)
    cut = next(islice(finder.finditer(markup), max_rows, None), None)
    if cut is None:
        return markup, 0
    rest, removed = tags.subn(type(markup)(), markup[cut.start() :])
    return markup[: cut.start()] + rest, removed


def extract_html(markup: str | bytes, max_rows: int | None = None) -> PageImages:
    """Parse one page (``bytes`` must be UTF-8) and list its candidate pairs, at most ``max_rows`` of them."""
    unlisted = 0
    if max_rows is not None:
        markup, unlisted = _without_images_after(markup, max_rows)
    tree = LexborHTMLParser(markup)
    page = PageImages(unlisted=unlisted)
    for node in tree.tags("base"):
        href = node.attrs.get("href")
        if href is not None:
            page.base_href = href
            break
    robots = []
    for node in tree.tags("meta"):
        attrs = node.attrs
        name = attrs.get("name") or attrs.get("http-equiv")
        if name and name.strip().lower() in ROBOTS_META_NAMES:
            robots.append(attrs.get("content"))
    page.opt_out = opts_out(robots)
    images = page.images
    for node in tree.tags("img"):
        if max_rows is not None and len(images) >= max_rows:
            page.unlisted += 1
            continue
        get = node.attributes.get
        text, source = pick_text(get)
        images.append((pick_src(get), text, source))
    return page
