"""Generate the sample web: served image files, WARC shards of the pages that link them, an eval split, and
the ground truth of every image link.

Default size: 4 shards × 60 pages × 10 images = 2,400 image links (2,336 image files, about 45 MB), plus
48 classes × 10 eval images (about 20 MB); 5-8 s on two cores.

Each image link gets exactly one *kind*. ``clean`` links are what a curated pool should keep; every other kind
is one problem a stage of the pipeline must handle, in a fixed, known amount: a fraction of the links on the
shard's ordinary pages (``NOISE_FRACTIONS``, rounded per shard), a count per shard (``PER_SHARD``), or whole
pages (opt-out). Counts for the default web are in brackets.

==============  =======================================================  ======================  ==============
kind            what the page or server does                             amount                  ``expect``
==============  =======================================================  ======================  ==============
clean           alt text names the pictured concept                      the rest (1,274)        keep
title_only      no alt; the caption is in ``title``                      3% (68)                 keep
redirect        ``/redirect?to=`` a real image                           1 per shard             keep
slow            ``/slow/<s>/`` a real image (``slow_links``)             1 in all                keep
opt_out         page has robots meta noai / noimageai (2 pages per       2-3 pages per shard     crawl:opt_out
                shard) or, once, a WARC ``X-Robots-Tag: noai`` header    (90)
no_alt          alt missing or empty                                     4% (92)                 crawl:no_text
data_uri        ``src="data:..."`` tracking pixel, alt "spacer"          1 per shard             crawl:bad_url
not_found       404                                                      1% (24)                 download:error
server_error    500                                                      1 per shard             download:error
html_as_image   HTML body served as ``image/jpeg``                       1 per shard             download:error
corrupt         JPEG cut inside its header / PNG cut in half             2 per shard             download:error
redirect_loop   A → B → A redirects                                      1 per shard             download:error
noai_image      image served with ``X-Robots-Tag: noai``                 2 per shard             download:opt_out
exact_dup       same bytes as an earlier clean image, new URL + caption  4% (92)                 dedup:exact
repeat_url      same URL and caption as an earlier clean link            1% (24)                 dedup:exact
near_dup        resized / JPEG re-encoded / cropped / colour-shifted     5% (115)                dedup:near
eval_leak       resized copy of an eval-split image                      2 per shard             dedup:eval
junk_alt        "IMG_0042.jpg", "click here", "logo", ...                5% (115)                curation:no_match
mismatch        caption names another concept                            8% (184)                quality:clip_score
non_english     German / French / Spanish sentence                       5% (115)                quality:language
short_caption   ≤ 2 words ("red star", "star")                           2% (47)                 quality:caption_length
tiny            icon, 32-96 px square                                    3% (68)                 quality:image_size
banner          840-1000 × 200-240 px, aspect ratio > 3                  2% (47)                 quality:aspect_ratio
==============  =======================================================  ======================  ==============

``expect`` is ``keep`` or ``<stage>:<reason>``: the filter meant to catch the kind. An earlier stage may drop a
sample for another reason first (a German caption usually matches no metadata entry, so curation drops it
before the language filter), ``slow`` is kept only if the download timeout exceeds its delay, and balancing
still thins the head among ``keep`` rows. Duplicates always come after their original (a clean link) in
(shard, page, position) order, so a first-seen-wins dedup keeps the original; some pairs cross shards.

Besides the links, the WARCs carry decoys that must yield no pairs: an ``<img>`` inside an HTML comment and
one inside a ``<script>`` string, and text/plain, 404 and 301 responses whose bodies contain ``<img>`` markup.
Some pages set ``<base href>`` (absolute or root-relative), about 40% of ``src`` values are relative (root-,
path- or protocol-relative), one page per shard is ISO-8859-1 encoded and carries a non-English caption, and
``<img>`` markup varies (attribute order and case, quoting, ``title`` next to ``alt``, links around images).
About 10% of ordinary images are 400-640 px (for download resizing); the rest are 224-320 px.

**The hard web** (``mode="hard"``, same size) is built to be as hard as real noisy webs: about half of all
captions are mismatched, generic or junk (``HARD_NOISE_FRACTIONS``: mismatch 27%, generic 12%, junk 10% of
the links), a wrong caption names a look-alike concept half the time (a neighbouring colour, a shape alike in
outline) and otherwise a concept drawn as often as the web names it, and ``PRODUCT_SHARE`` (40%) of the images
(and of the eval split) are look-alike product shots (``render``'s ``product`` style, 200-240 px). Duplicates
are a little more frequent (exact 5%, near 6%, repeated URL 2%). ``generic`` captions ("product shot on a white
background", "new arrivals in our shop this week") name no concept; half name a backdrop, which the sample
web's metadata lists, so they pass curation as real boilerplate does and only a judge can catch them.

Besides ``kind`` and ``expect``, the ground truth gives every link ``caption_truth`` (``correct``,
``mismatched``, ``generic``, ``junk``, or null: see :func:`caption_truth`), the ``concept`` its image shows and
the caption names (``caption_concept``), and the image ``style`` (``varied`` or ``product``).

Randomness comes from numpy generators keyed by (seed, purpose, id), so one link's image does not depend on
how many links came before it or on thread scheduling; WARC dates and record ids are derived from the seed and
position; Pillow's encoders and zlib are deterministic. Same arguments, same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import posixpath
import shutil
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from io import BytesIO
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from infra.sample_web import render
from infra.sample_web.concepts import (
    CONCEPTS,
    LANGUAGES,
    class_dirname,
    english_caption,
    foreign_caption,
    generic_caption,
    junk_caption,
    look_alike,
    zipf_quota,
    zipf_weights,
)

SOURCE_NAME = "sample_web"

NOISE_FRACTIONS: dict[str, float] = {
    "mismatch": 0.08,
    "near_dup": 0.05,
    "junk_alt": 0.05,
    "non_english": 0.05,
    "exact_dup": 0.04,
    "no_alt": 0.04,
    "title_only": 0.03,
    "tiny": 0.03,
    "short_caption": 0.02,
    "banner": 0.02,
    "repeat_url": 0.01,
    "not_found": 0.01,
}
"""Fraction of the links on each shard's ordinary (not opted-out) pages, rounded per shard."""

HARD_NOISE_FRACTIONS: dict[str, float] = {
    "mismatch": 0.27,
    "generic": 0.12,
    "junk_alt": 0.10,
    "near_dup": 0.06,
    "exact_dup": 0.05,
    "non_english": 0.03,
    "no_alt": 0.03,
    "title_only": 0.02,
    "tiny": 0.02,
    "short_caption": 0.02,
    "repeat_url": 0.02,
    "banner": 0.01,
    "not_found": 0.01,
}
"""The hard web's fractions: about half of all captions are mismatched, generic or junk."""
PRODUCT_SHARE = 0.4
"""In the hard web, the share of ordinary own images (and of eval images) drawn as look-alike product shots."""
MODES: tuple[str, ...] = ("standard", "hard")

PER_SHARD: dict[str, int] = {
    "corrupt": 2,
    "noai_image": 2,
    "eval_leak": 2,
    "server_error": 1,
    "html_as_image": 1,
    "redirect": 1,
    "redirect_loop": 1,
    "data_uri": 1,
}
"""Links of these kinds on every shard."""

EXPECT: dict[str, str] = {
    "clean": "keep",
    "title_only": "keep",
    "redirect": "keep",
    "slow": "keep",
    "opt_out": "crawl:opt_out",
    "no_alt": "crawl:no_text",
    "data_uri": "crawl:bad_url",
    "not_found": "download:error",
    "server_error": "download:error",
    "html_as_image": "download:error",
    "corrupt": "download:error",
    "redirect_loop": "download:error",
    "noai_image": "download:opt_out",
    "exact_dup": "dedup:exact",
    "repeat_url": "dedup:exact",
    "near_dup": "dedup:near",
    "eval_leak": "dedup:eval",
    "junk_alt": "curation:no_match",
    "generic": "quality:judge",
    "mismatch": "quality:clip_score",
    "non_english": "quality:language",
    "short_caption": "quality:caption_length",
    "tiny": "quality:image_size",
    "banner": "quality:aspect_ratio",
}

EVAL_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a drawing of a {}.",
    "a {} on a plain background.",
    "a small {}.",
    "a large {}.",
)

_DUP_KINDS = ("exact_dup", "near_dup", "repeat_url")
_OWN_IMAGE = {
    "clean", "title_only", "redirect", "slow", "opt_out", "no_alt", "noai_image", "junk_alt", "mismatch",
    "non_english", "short_caption", "tiny", "banner", "eval_leak", "generic",
}  # fmt: skip
_SIZED_KINDS = ("tiny", "banner")  # keep their own sizes (and the varied style) in every mode
_URL_FORMS = (("absolute", 0.60), ("root_relative", 0.20), ("path_relative", 0.17), ("protocol_relative", 0.03))
_SECTIONS = ("gallery", "blog/2024", "shop/items/shapes")
_WORKERS = min(8, os.cpu_count() or 1)
_EPOCH = datetime(2024, 5, 1, tzinfo=UTC)
_PIXEL = (
    "data:image/gif;base64,"
    + base64.b64encode(
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
        b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    ).decode()
)
_FILLER = (
    "Welcome to our collection of simple shapes drawn by hand and by machine.",
    "We post new pictures every week; the archive goes back several years.",
    "All images on this page are free to use for teaching.",
    "Scroll down to see more, or use the menu to jump to another section.",
    "Comments are closed for this post.",
)


@dataclass(frozen=True)
class SampleWeb:
    """Where a generated sample web lives and how big it is."""

    root: Path
    base_url: str
    seed: int
    site_dir: Path
    warc_paths: tuple[Path, ...]
    eval_dir: Path
    ground_truth_path: Path
    manifest_path: Path
    n_shards: int
    n_pages: int
    n_links: int
    n_image_files: int
    n_eval_images: int
    classes: tuple[str, ...]
    kind_counts: dict[str, int]
    html_counts: dict[str, int]
    decoys: dict[str, int]
    mode: str = "standard"


@dataclass
class _Link:
    link_id: int
    shard: int
    page: int
    position: int
    kind: str
    concept: str | None = None
    caption: str | None = None
    caption_concept: str | None = None
    text_source: str | None = None
    lang: str | None = None
    path: str | None = None
    file: str | None = None
    url: str | None = None
    src: str | None = None
    url_form: str | None = None
    duplicate_of: str | None = None
    duplicate_of_id: int | None = None
    detail: str | None = None
    style: str | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    extra_title: str | None = None


@dataclass
class _Page:
    shard: int
    index: int
    path: str
    opt_out: str | None = None
    base_href: str | None = None
    charset: str = "utf-8"
    robots_control: bool = False
    decoys: list[str] = field(default_factory=list)
    links: list[_Link] = field(default_factory=list)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
        raise ValueError(f"base_url must be scheme://host[:port] with no path, got {base_url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def generate(
    out_dir: Path,
    base_url: str,
    *,
    n_shards: int = 4,
    pages_per_shard: int = 60,
    images_per_page: int = 10,
    eval_per_class: int = 10,
    slow_links: int = 1,
    slow_seconds: float = 3.0,
    seed: int = 0,
    mode: str = "standard",
) -> SampleWeb:
    """Write the sample web under ``out_dir`` and return where everything went.

    ``out_dir/site`` (what :func:`infra.sample_web.serve` serves), ``out_dir/sources/sample_web`` and
    ``out_dir/eval/sample_web`` are owned by the generator and replaced on every call. ``mode="hard"`` writes
    the hard web (see the module docstring) at the same size.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    hard = mode == "hard"
    base_url = _check_base_url(base_url)
    if pages_per_shard < 5 or images_per_page < 4 or n_shards < 1:
        raise ValueError("the sample web needs n_shards ≥ 1, pages_per_shard ≥ 5 and images_per_page ≥ 4")
    if not 0 < slow_seconds <= 30:
        raise ValueError("slow_seconds must be in (0, 30]: the server caps its delay at 30 s")
    out_dir = Path(out_dir)
    site_dir = out_dir / "site"
    sources_dir = out_dir / "sources" / SOURCE_NAME
    eval_dir = out_dir / "eval" / SOURCE_NAME
    for d in (site_dir, sources_dir, eval_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)

    fractions = HARD_NOISE_FRACTIONS if hard else NOISE_FRACTIONS
    pages = _plan_pages(seed, base_url, n_shards, pages_per_shard, images_per_page, slow_links, fractions)
    links = [link for page in pages for link in page.links]
    _pair_duplicates(seed, links)
    _assign_concepts(seed, links)

    n_eval = _write_eval(seed, eval_dir, eval_per_class, hard)
    by_id = {link.link_id: link for link in links}
    page_of = {link.link_id: page for page in pages for link in page.links}
    needed = {link.duplicate_of_id for link in links if link.duplicate_of_id is not None}
    cache: dict[int, tuple[Image.Image, bytes, str]] = {}
    files: dict[str, bytes] = {}

    def fill(link: _Link) -> None:
        _fill_link(seed, link, by_id, cache, needed, files, eval_per_class, slow_seconds, hard)
        _set_url(seed, link, page_of[link.link_id], base_url)

    # Each link draws from its own generator and writes only its own keys, so threads (Pillow and numpy
    # release the GIL) change nothing but the wall time. Duplicates wait for their originals.
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        list(pool.map(fill, [link for link in links if link.kind not in _DUP_KINDS]))
        list(pool.map(fill, [link for link in links if link.kind in _DUP_KINDS]))
    _write_files(site_dir, files)

    decoys: Counter[str] = Counter()
    warc_paths = []
    for shard in range(n_shards):
        shard_pages = [p for p in pages if p.shard == shard]
        path = sources_dir / f"shard-{shard:04d}.warc.gz"
        decoys.update(_write_warc(seed, path, shard, shard_pages, base_url, site_dir))
        warc_paths.append(path)

    gt_path = out_dir / "ground_truth.parquet"
    _write_ground_truth(gt_path, pages, base_url)
    web = SampleWeb(
        root=out_dir,
        base_url=base_url,
        seed=seed,
        site_dir=site_dir,
        warc_paths=tuple(warc_paths),
        eval_dir=eval_dir,
        ground_truth_path=gt_path,
        manifest_path=out_dir / "sample_web.json",
        n_shards=n_shards,
        n_pages=len(pages),
        n_links=len(links),
        n_image_files=sum(1 for rel in files if rel.startswith(("img/", "noai/"))),
        n_eval_images=n_eval,
        classes=CONCEPTS,
        kind_counts=dict(sorted(Counter(link.kind for link in links).items())),
        html_counts=_html_counts(pages),
        decoys=dict(sorted(decoys.items())),
        mode=mode,
    )
    params = {
        "pages_per_shard": pages_per_shard,
        "images_per_page": images_per_page,
        "eval_per_class": eval_per_class,
        "slow_links": slow_links,
        "slow_seconds": slow_seconds,
        "mode": mode,
    }
    manifest = {
        name: [p.relative_to(out_dir).as_posix() for p in value]
        if name == "warc_paths"
        else value.relative_to(out_dir).as_posix()
        if isinstance(value, Path)
        else value
        for name, value in vars(web).items()
        if name not in ("root", "classes")
    }
    web.manifest_path.write_text(json.dumps({**manifest, "params": params}, indent=2, sort_keys=True) + "\n")
    return web


def _html_counts(pages: list[_Page]) -> dict[str, int]:
    links = [link for page in pages for link in page.links]
    return {
        "pages": len(pages),
        "img_tags": len(links),
        "alt_text": sum(link.text_source == "alt" for link in links),
        "title_text": sum(link.text_source == "title" for link in links),
        "no_text": sum(link.text_source is None for link in links),
        "relative_src": sum(link.url_form not in ("absolute", "data") for link in links),
        "base_href_pages": sum(page.base_href is not None for page in pages),
        "opt_out_meta_pages": sum((page.opt_out or "").startswith("meta:") for page in pages),
        "opt_out_header_pages": sum((page.opt_out or "").startswith("header:") for page in pages),
        "iso_8859_1_pages": sum(page.charset == "iso-8859-1" for page in pages),
    }


def _write_files(root: Path, files: dict[str, bytes]) -> None:
    """Many small files: a few threads hide the per-file latency of slow or networked disks."""
    for parent in {(root / rel).parent for rel in files}:
        parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        list(pool.map(lambda item: (root / item[0]).write_bytes(item[1]), files.items()))


def _shard_kinds(n_ordinary: int, shard: int, n_shards: int, slow_links: int, fractions: dict[str, float]) -> list[str]:
    kinds = [kind for kind, frac in fractions.items() for _ in range(round(frac * n_ordinary))]
    kinds += [kind for kind, count in PER_SHARD.items() for _ in range(count)]
    kinds += ["slow"] * (slow_links // n_shards + (shard < slow_links % n_shards))
    if len(kinds) > n_ordinary:
        raise ValueError(f"shard {shard} has {n_ordinary} ordinary links, too few for {len(kinds)} noisy ones")
    return kinds + ["clean"] * (n_ordinary - len(kinds))


def _plan_pages(
    seed: int,
    base_url: str,
    n_shards: int,
    n_pages: int,
    per_page: int,
    slow_links: int,
    fractions: dict[str, float],
) -> list[_Page]:
    pages: list[_Page] = []
    link_id = 0
    for shard in range(n_shards):
        rng = _rng(seed, 0, shard)
        order = [int(i) for i in rng.permutation(n_pages)]
        opt_out = {order[0]: "meta:noai", order[1]: "meta:noimageai"}
        if shard == 0:
            opt_out[order[2]] = "header:noai"
        latin1 = order[3]
        shard_pages = []
        for index in range(n_pages):
            section = _SECTIONS[int(rng.integers(len(_SECTIONS)))]
            page = _Page(shard, index, f"/s{shard}/{section}/page-{index:03d}.html", opt_out.get(index))
            if index == latin1:
                page.charset = "iso-8859-1"
            if rng.random() < 0.12 or index == order[4]:
                page.base_href = "/gallery/assets/" if rng.random() < 0.5 else f"{base_url}/img/"
            page.robots_control = page.opt_out is None and rng.random() < 0.2
            shard_pages.append(page)
        ordinary = [(p, pos) for p in shard_pages if p.opt_out is None for pos in range(per_page)]
        kinds = _shard_kinds(len(ordinary), shard, n_shards, slow_links, fractions)
        kinds = [kinds[int(i)] for i in rng.permutation(len(kinds))]
        kind_at = {(p.index, pos): kind for (p, pos), kind in zip(ordinary, kinds, strict=True)}
        for page in shard_pages:
            for pos in range(per_page):
                kind = "opt_out" if page.opt_out else kind_at[(page.index, pos)]
                page.links.append(_Link(link_id, shard, page.index, pos, kind))
                link_id += 1
        _move_foreign_caption_to_latin1_page(rng, shard_pages[latin1], shard_pages)
        corrupt = [link for p in shard_pages for link in p.links if link.kind == "corrupt"]
        for i, link in enumerate(corrupt):
            link.detail = ("truncated_jpeg", "truncated_png")[i % 2]
        candidates = [p for p in shard_pages if p.opt_out is None]
        for decoy in ("comment", "script"):
            candidates[int(rng.integers(len(candidates)))].decoys.append(decoy)
        pages += shard_pages
    return pages


def _move_foreign_caption_to_latin1_page(rng: np.random.Generator, page: _Page, pages: list[_Page]) -> None:
    """Make sure the ISO-8859-1 page has non-ASCII text, so a decoder that assumes UTF-8 visibly breaks it."""
    if any(link.kind == "non_english" for link in page.links):
        return
    foreign = [link for p in pages for link in p.links if link.kind == "non_english"]
    clean = [link for link in page.links if link.kind == "clean"]
    if foreign and clean:
        a, b = foreign[int(rng.integers(len(foreign)))], clean[int(rng.integers(len(clean)))]
        a.kind, b.kind = b.kind, a.kind


def _pair_duplicates(seed: int, links: list[_Link]) -> None:
    """Give each duplicate a distinct clean original that comes earlier in crawl order (swapping if needed)."""
    rng = _rng(seed, 3)
    pool = [link.link_id for link in links if link.kind == "clean"]
    for dup_id in [link.link_id for link in links if link.kind in _DUP_KINDS]:
        if not pool:
            raise ValueError("too few clean links to serve as originals of the duplicates")
        other = pool.pop(int(rng.integers(len(pool))))
        dup, orig = links[dup_id], links[other]
        if other > dup_id:
            dup.kind, orig.kind = orig.kind, dup.kind
            dup, orig = orig, dup
        dup.duplicate_of_id = orig.link_id


def _assign_concepts(seed: int, links: list[_Link]) -> None:
    """Zipf quota over the links that show an image of their own; duplicates inherit their original's."""
    own = [link for link in links if link.kind in _OWN_IMAGE]
    quota = zipf_quota(len(own))
    concepts = [c for c, n in quota.items() for _ in range(n)]
    order = _rng(seed, 4).permutation(len(concepts))
    for link, i in zip(own, order, strict=True):
        link.concept = concepts[int(i)]
    by_id = {link.link_id: link for link in links}
    for link in links:
        if link.kind in _DUP_KINDS:
            link.concept = by_id[link.duplicate_of_id].concept


def _eval_image(seed: int, class_index: int, n: int, hard: bool):
    """The n-th eval image of a class; in the hard web every other one (odd n) is a product shot."""
    rng = _rng(seed, 2, class_index, n)
    style = "product" if hard and n % 2 else "varied"
    scene = render.sample_scene(rng, CONCEPTS[class_index], 224, 224, style=style)
    return scene, render.render(scene)


def _write_eval(seed: int, eval_dir: Path, per_class: int, hard: bool) -> int:
    def one(key: tuple[int, int]) -> tuple[str, bytes]:
        ci, n = key
        return f"{class_dirname(CONCEPTS[ci])}/{n}.png", render.encode(_eval_image(seed, ci, n, hard)[1], "png")

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        files = dict(pool.map(one, [(ci, n) for ci in range(len(CONCEPTS)) for n in range(per_class)]))
    _write_files(eval_dir, files)
    (eval_dir / "classes.json").write_text(json.dumps(list(CONCEPTS), indent=1) + "\n")
    (eval_dir / "templates.json").write_text(json.dumps(list(EVAL_TEMPLATES), indent=1) + "\n")
    return len(CONCEPTS) * per_class


def _image_size(rng: np.random.Generator, kind: str) -> tuple[int, int]:
    if kind == "tiny":
        side = int(rng.integers(32, 97))
        return side, side
    if kind == "banner":
        return int(rng.integers(840, 1001)), int(rng.integers(200, 241))
    lo, hi = (400, 641) if rng.random() < 0.1 else (224, 321)
    return int(rng.integers(lo, hi)), int(rng.integers(lo, hi))


def _style(rng: np.random.Generator, kind: str, hard: bool) -> str:
    if not hard or kind in _SIZED_KINDS:
        return "varied"
    return "product" if rng.random() < PRODUCT_SHARE else "varied"


def _wrong_concept(rng: np.random.Generator, concept: str, hard: bool) -> str:
    """What a mismatched caption names: any other concept; in the hard web half the time a look-alike and
    otherwise one drawn as often as the web names it, so wrong captions pile up on the head concepts."""
    if not hard:
        others = [c for c in CONCEPTS if c != concept]
        return others[int(rng.integers(len(others)))]
    if rng.random() < 0.5:
        return look_alike(rng, concept)
    weights = {c: w for c, w in zipf_weights().items() if c != concept}
    names = list(weights)
    p = np.array(list(weights.values()))
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def caption_truth(kind: str, concept: str | None, caption: str | None, caption_concept: str | None) -> str | None:
    """What a link's caption is worth, from the ground truth: ``correct`` (names the pictured concept, in any
    language), ``mismatched`` (names another concept), ``generic`` (names none, or only a shape), ``junk``
    (file names, "click here", a spacer), or None when there is no caption or no image to describe."""
    if caption is None:
        return None
    if kind in ("junk_alt", "data_uri"):
        return "junk"
    if concept is None:
        return None
    if kind == "generic" or caption_concept is None:
        return "generic"
    return "correct" if caption_concept == concept else "mismatched"


def _caption_for(rng: np.random.Generator, link: _Link, scene: render.Scene | None, hard: bool) -> None:
    """Set caption, caption_concept, text_source and lang for a link that is not a duplicate."""
    concept = link.concept or CONCEPTS[int(rng.integers(len(CONCEPTS)))]
    bg = scene.background if scene else "white"
    link.text_source, link.lang, link.caption_concept = "alt", "en", concept
    if link.kind == "no_alt":
        link.text_source = link.lang = link.caption_concept = None
        link.detail = "missing" if rng.random() < 0.5 else "empty"
        return
    if link.kind == "junk_alt":
        link.caption, link.caption_concept, link.lang = junk_caption(rng), None, None
        return
    if link.kind == "data_uri":
        link.caption, link.caption_concept = "spacer", None
        return
    if link.kind == "non_english":
        link.lang = LANGUAGES[int(rng.integers(len(LANGUAGES)))]
        link.caption = foreign_caption(rng, concept, link.lang, bg=bg)
        return
    if link.kind == "mismatch":
        link.caption_concept = _wrong_concept(rng, concept, hard)
        link.caption = english_caption(rng, link.caption_concept, bg=bg)
        return
    if link.kind == "generic":
        link.caption, link.caption_concept = generic_caption(rng, bg=bg), None
        return
    style = {"tiny": "tiny", "banner": "banner", "short_caption": "short"}.get(link.kind, "normal")
    if scene is not None and style == "normal":
        distractor = scene.distractor.concept if scene.distractor else None
        link.caption = english_caption(
            rng, concept, bg=bg, size_word=scene.size_word, position=scene.position, distractor=distractor
        )
    else:
        link.caption = english_caption(rng, concept, bg=bg, style=style)
    if style == "short" and len(link.caption.split()) == 1:
        link.caption_concept = None
    if link.kind == "title_only":
        link.text_source = "title"
    elif link.kind == "clean" and rng.random() < 0.05:
        link.extra_title = "Click to enlarge"


def _fill_link(
    seed: int,
    link: _Link,
    by_id: dict[int, _Link],
    cache: dict[int, tuple[Image.Image, bytes, str]],
    needed: set[int],
    files: dict[str, bytes],
    eval_per_class: int,
    slow_seconds: float,
    hard: bool,
) -> None:
    """Decide the link's image bytes, caption and site path; record the bytes to write in ``files``."""
    rng = _rng(seed, 1, link.link_id)
    kind, shard, stem = link.kind, link.shard, f"{link.link_id:06d}"
    if kind in _DUP_KINDS:
        orig = by_id[link.duplicate_of_id]
        img, data, fmt = cache[orig.link_id]
        link.duplicate_of = orig.url
        link.text_source, link.lang, link.caption_concept = "alt", "en", link.concept
        link.width, link.height, link.style = orig.width, orig.height, orig.style
        if kind == "repeat_url":
            link.caption, link.path, link.file, link.sha256 = orig.caption, orig.path, orig.file, orig.sha256
            return
        for _ in range(10):
            link.caption = english_caption(rng, link.concept, bg="white" if rng.random() < 0.5 else "grey")
            if link.caption != orig.caption:
                break
        if kind == "near_dup":
            link.detail = render.NEAR_DUP_TRANSFORMS[int(rng.integers(len(render.NEAR_DUP_TRANSFORMS)))]
            img = render.near_duplicate(rng, img, link.detail)
            fmt = "jpg" if link.detail == "jpeg" else fmt
            data = render.encode(img, fmt, quality=int(rng.integers(35, 56)) if link.detail == "jpeg" else 90)
            link.width, link.height = img.size
        _store(link, files, f"img/s{shard}/{stem}.{fmt}", data)
        return

    scene = img = None
    if link.kind == "eval_leak":
        ci = CONCEPTS.index(link.concept)
        n = int(rng.integers(eval_per_class))
        scene, img = _eval_image(seed, ci, n, hard)
        f = float(rng.uniform(1.1, 1.3))
        img = img.resize((round(img.width * f), round(img.height * f)))
        link.duplicate_of = f"eval/{SOURCE_NAME}/{class_dirname(link.concept)}/{n}.png"
    elif kind in _OWN_IMAGE or kind == "corrupt":
        concept = link.concept or CONCEPTS[int(rng.integers(len(CONCEPTS)))]
        style = _style(rng, kind, hard)
        size = (int(rng.integers(200, 241)),) * 2 if style == "product" else _image_size(rng, kind)
        scene = render.sample_scene(rng, concept, *size, style=style)
        img = render.render(scene)
    link.style = scene.style if scene is not None else None
    _caption_for(rng, link, scene, hard)

    fmt = "png" if rng.random() < 0.1 else "jpg"
    data = render.encode(img, fmt, quality=int(rng.integers(80, 96))) if img is not None else b""
    if img is not None and kind != "corrupt":
        link.width, link.height = img.size
    if link.link_id in needed:
        cache[link.link_id] = (img, data, fmt)
    img_rel = f"img/s{shard}/{stem}.{fmt}"
    if kind in _OWN_IMAGE and kind not in ("noai_image", "redirect", "slow"):
        _store(link, files, img_rel, data)
    elif kind == "noai_image":
        _store(link, files, f"noai/s{shard}/{stem}.{fmt}", data)
    elif kind == "redirect":
        _store(link, files, img_rel, data)
        link.path = "/redirect?to=" + quote("/" + img_rel, safe="")
    elif kind == "slow":
        _store(link, files, img_rel, data)
        link.path = f"/slow/{slow_seconds:g}/{img_rel}"
        link.detail = f"{slow_seconds:g}s"
    elif kind == "corrupt":
        fmt = "jpg" if link.detail == "truncated_jpeg" else "png"
        data = render.encode(img, fmt)
        _store(link, files, f"img/s{shard}/{stem}.{fmt}", data[: 100 if fmt == "jpg" else len(data) // 2])
    elif kind == "not_found":
        link.path = f"/{img_rel}"
    elif kind == "server_error":
        link.path = f"/status/500/{img_rel}"
    elif kind == "html_as_image":
        link.path = f"/html-as-image/s{shard}/{stem}.jpg"
    elif kind == "redirect_loop":
        link.path = f"/redirect-loop/s{shard}/{stem}.jpg"
    elif kind == "data_uri":
        link.path = None
    else:
        raise AssertionError(kind)


def _store(link: _Link, files: dict[str, bytes], rel: str, data: bytes) -> None:
    files[rel] = data
    link.file, link.path = rel, "/" + rel
    link.sha256 = hashlib.sha256(data).hexdigest()


def _set_url(seed: int, link: _Link, page: _Page, base_url: str) -> None:
    if link.kind == "data_uri":
        link.src = link.url = _PIXEL
        link.url_form = "data"
        return
    link.url = base_url + link.path
    forms, weights = zip(*_URL_FORMS, strict=True)
    form = forms[int(_rng(seed, 5, link.link_id).choice(len(forms), p=weights))]
    link.url_form = form
    if form == "absolute":
        link.src = link.url
    elif form == "root_relative":
        link.src = link.path
    elif form == "protocol_relative":
        link.src = "//" + urlsplit(base_url).netloc + link.path
    else:
        resolve_base = _resolution_base(page, base_url)
        path, _, query = link.path.partition("?")
        rel = posixpath.relpath(path, posixpath.dirname(urlsplit(resolve_base).path))
        link.src = rel + (f"?{query}" if query else "")
    if urljoin(_resolution_base(page, base_url), link.src) != link.url:
        raise AssertionError(f"{link.src!r} on {page.path} does not resolve to {link.url}")


def _resolution_base(page: _Page, base_url: str) -> str:
    page_url = base_url + page.path
    href = page.base_href
    return urljoin(page_url, href) if href else page_url


def _img_tag(rng: np.random.Generator, link: _Link) -> str:
    attrs: list[tuple[str, str]] = [("src", link.src or "")]
    if link.text_source == "title":
        attrs.append(("title", link.caption or ""))
    elif link.kind == "no_alt":
        if link.detail == "empty":
            attrs.append(("alt", ""))
    else:
        attrs.append(("alt", link.caption or ""))
    if link.extra_title:
        attrs.append(("title", link.extra_title))
    style = int(rng.integers(4))
    tag, quote_char, close = "img", '"', ">"
    if style == 0 and link.width:
        attrs += [("width", str(link.width)), ("height", str(link.height)), ("loading", "lazy")]
    elif style == 1:
        attrs.reverse()
    elif style == 2:
        tag, attrs = "IMG", [(k.upper(), v) for k, v in attrs]
    else:
        attrs.insert(0, ("class", "thumb"))
        quote_char, close = "'", " />"
    body = " ".join(f"{k}={quote_char}{html.escape(v, quote=True)}{quote_char}" for k, v in attrs)
    img = f"<{tag} {body}{close}"
    if rng.random() < 0.3 and link.url_form != "data":
        img = f'<a href="{html.escape(link.src or "")}">{img}</a>'
    if rng.random() < 0.5:
        return f"<figure>{img}<figcaption>Figure {link.position + 1}</figcaption></figure>"
    return f'<div class="item">{img}</div>'


def _page_html(seed: int, page: _Page, base_url: str) -> bytes:
    rng = _rng(seed, 6, page.shard, page.index)
    head = [f'<meta charset="{page.charset}">', f"<title>Shapes, page {page.index} of shard {page.shard}</title>"]
    if page.charset != "utf-8":
        head[0] = f'<meta http-equiv="Content-Type" content="text/html; charset={page.charset}">'
    if page.opt_out == "meta:noai":
        head.append('<meta name="robots" content="noai">')
    elif page.opt_out == "meta:noimageai":
        head.append('<meta name="Robots" content="index, noimageai">')
    elif page.robots_control:
        head.append('<meta name="robots" content="index, follow">')
    href = page.base_href
    if href:
        head.append(f'<base href="{html.escape(href)}">')
    body = [
        '<header><nav><a href="/">Home</a> | <a href="/s0/gallery/page-000.html">Gallery</a></nav></header>',
        "<main>",
        f"<h1>{'Café des formes' if page.charset != 'utf-8' else 'Shape gallery'} #{page.index}</h1>",
        f"<p>{_FILLER[int(rng.integers(len(_FILLER)))]}</p>",
    ]
    for link in page.links:
        body.append(_img_tag(rng, link))
    if "comment" in page.decoys:
        body.append('<!-- old layout: <img src="/img/retired/hero.jpg" alt="a red circle on a white background"> -->')
    if "script" in page.decoys:
        body.append('<script>var tpl = \'<img src="/img/template.jpg" alt="a blue square on grey">\';</script>')
    body += ["</main>", "<footer><p>&copy; 2024 Sample shapes &amp; friends</p></footer>"]
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", *head, "</head>", "<body>", *body, "</body>", "</html>"]
    doc = "\n".join([*lines, ""])
    return doc.encode(page.charset, errors="xmlcharrefreplace")


def _record_id(seed: int, *key: object) -> str:
    digest = hashlib.sha256(repr((seed, *key)).encode()).digest()
    return f"<urn:uuid:{uuid.UUID(bytes=digest[:16], version=4)}>"


def _write_warc(seed: int, path: Path, shard: int, pages: list[_Page], base_url: str, site_dir: Path) -> Counter:
    netloc = urlsplit(base_url).netloc
    buf = BytesIO()
    writer = WARCWriter(buf, gzip=True)
    start = _EPOCH + timedelta(days=shard)
    info = (
        "software: clipfoundry sample web\r\nformat: WARC File Format 1.0\r\n"
        f"isPartOf: {SOURCE_NAME}\r\noperator: clipfoundry tests\r\nseed: {seed}\r\n"
    ).encode()
    writer.write_record(
        writer.create_warc_record(
            "",
            "warcinfo",
            payload=BytesIO(info),
            length=len(info),
            warc_content_type="application/warc-fields",
            warc_headers_dict={
                "WARC-Record-ID": _record_id(seed, shard, "warcinfo"),
                "WARC-Date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "WARC-Filename": path.name,
            },
        )
    )
    decoys: Counter[str] = Counter()
    second = 0

    def fetch(page_path: str, status: str, content_type: str, body: bytes, extra: list[tuple[str, str]]) -> None:
        nonlocal second
        second += 7
        when = start + timedelta(seconds=second)
        url = base_url + page_path
        warc_date = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        resp_id = _record_id(seed, shard, page_path, "response")
        request = StatusAndHeaders(
            f"GET {page_path} HTTP/1.1",
            [
                ("Host", netloc),
                ("User-Agent", "CCBot/2.0 (https://commoncrawl.org/faq/)"),
                ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("Accept-Language", "en-US,en;q=0.5"),
                ("Connection", "close"),
            ],
            is_http_request=True,
        )
        writer.write_record(
            writer.create_warc_record(
                url,
                "request",
                payload=BytesIO(b""),
                length=0,
                http_headers=request,
                warc_headers_dict={
                    "WARC-Record-ID": _record_id(seed, shard, page_path, "request"),
                    "WARC-Date": warc_date,
                    "WARC-Concurrent-To": resp_id,
                    "WARC-IP-Address": "127.0.0.1",
                },
            )
        )
        headers = [
            ("Date", format_datetime(when, usegmt=True)),
            ("Server", "nginx/1.24.0"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Last-Modified", format_datetime(when - timedelta(days=30), usegmt=True)),
            *extra,
            ("Connection", "close"),
        ]
        writer.write_record(
            writer.create_warc_record(
                url,
                "response",
                payload=BytesIO(body),
                length=len(body),
                http_headers=StatusAndHeaders(status, headers, protocol="HTTP/1.1"),
                warc_headers_dict={
                    "WARC-Record-ID": resp_id,
                    "WARC-Date": warc_date,
                    "WARC-IP-Address": "127.0.0.1",
                },
            )
        )

    decoy_at = {len(pages) // 3: "text_plain", len(pages) // 2: "http_404", 2 * len(pages) // 3: "http_301"}
    for i, page in enumerate(pages):
        body = _page_html(seed, page, base_url)
        target = site_dir / page.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        extra = [("X-Robots-Tag", "noai")] if page.opt_out == "header:noai" else []
        fetch(page.path, "200 OK", f"text/html; charset={page.charset}", body, extra)
        decoys.update(f"html_{d}" for d in page.decoys)
        kind = decoy_at.get(i)
        if kind == "text_plain":
            text = b'How to embed a picture: <img src="/img/example.jpg" alt="a green star on a black background">\n'
            fetch(f"/s{shard}/notes.txt", "200 OK", "text/plain; charset=utf-8", text, [])
        elif kind == "http_404":
            text = b'<html><body><h1>Not found</h1><img src="/img/404.png" alt="a sad yellow circle"></body></html>'
            fetch(f"/s{shard}/gone.html", "404 Not Found", "text/html; charset=utf-8", text, [])
        elif kind == "http_301":
            text = b'<html><body>Moved <img src="/img/moved.png" alt="a purple ring on white"></body></html>'
            location = [("Location", base_url + pages[0].path)]
            fetch(f"/s{shard}/moved.html", "301 Moved Permanently", "text/html; charset=utf-8", text, location)
        if kind:
            decoys[f"record_{kind}"] += 1
    path.write_bytes(buf.getvalue())
    return decoys


def _write_ground_truth(path: Path, pages: list[_Page], base_url: str) -> None:
    rows = []
    for page in pages:
        for link in page.links:
            rows.append(
                {
                    "link_id": link.link_id,
                    "shard": link.shard,
                    "source_file": f"shard-{link.shard:04d}.warc.gz",
                    "page_url": base_url + page.path,
                    "page_index": page.index,
                    "position": link.position,
                    "page_opt_out": page.opt_out,
                    "page_base_href": page.base_href,
                    "page_charset": page.charset,
                    "src": link.src,
                    "url": link.url,
                    "url_form": link.url_form,
                    "text_source": link.text_source,
                    "caption": link.caption,
                    "lang": link.lang,
                    "concept": link.concept,
                    "caption_concept": link.caption_concept,
                    "caption_truth": caption_truth(link.kind, link.concept, link.caption, link.caption_concept),
                    "style": link.style,
                    "kind": link.kind,
                    "expect": EXPECT[link.kind],
                    "detail": link.detail,
                    "duplicate_of": link.duplicate_of,
                    "file": link.file,
                    "sha256": link.sha256,
                    "width": link.width,
                    "height": link.height,
                }
            )
    schema = pa.schema(
        [
            ("link_id", pa.int32()),
            ("shard", pa.int32()),
            ("source_file", pa.string()),
            ("page_url", pa.string()),
            ("page_index", pa.int32()),
            ("position", pa.int32()),
            ("page_opt_out", pa.string()),
            ("page_base_href", pa.string()),
            ("page_charset", pa.string()),
            ("src", pa.string()),
            ("url", pa.string()),
            ("url_form", pa.string()),
            ("text_source", pa.string()),
            ("caption", pa.string()),
            ("lang", pa.string()),
            ("concept", pa.string()),
            ("caption_concept", pa.string()),
            ("caption_truth", pa.string()),
            ("style", pa.string()),
            ("kind", pa.string()),
            ("expect", pa.string()),
            ("detail", pa.string()),
            ("duplicate_of", pa.string()),
            ("file", pa.string()),
            ("sha256", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
