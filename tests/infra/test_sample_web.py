"""The sample web: deterministic, self-consistent (WARC HTML ⇔ ground truth ⇔ served bytes), long-tailed, served."""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from io import BytesIO
from itertools import combinations
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from warcio.archiveiterator import ArchiveIterator

from infra.sample_web import (
    CONCEPTS,
    EXPECT,
    HARD_NOISE_FRACTIONS,
    NOISE_FRACTIONS,
    PER_SHARD,
    SampleWeb,
    caption_truth,
    generate,
    serve,
)
from infra.sample_web.__main__ import main as cli_main
from infra.sample_web.concepts import LOOK_ALIKE_COLOURS, LOOK_ALIKE_SHAPES, ranked_concepts
from ops.dedup.config import DedupConfig
from ops.dedup.fingerprint import phash_many

SMALL = {"n_shards": 2, "pages_per_shard": 8, "images_per_page": 8, "eval_per_class": 2}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SampleWeb, str]]:
    """The default-size web, generated against a running server (pages embed its URL)."""
    out = tmp_path_factory.mktemp("sample_web")
    with serve(out / "site") as server:
        yield generate(out, server.url), server.url


@pytest.fixture(scope="module")
def truth(web: tuple[SampleWeb, str]) -> list[dict]:
    return pq.read_table(web[0].ground_truth_path).to_pylist()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    base = "http://127.0.0.1:8765"
    a, b, c = (tmp_path / name for name in "abc")
    generate(a, base, seed=3, **SMALL)
    generate(b, base, seed=3, **SMALL)
    generate(c, base, seed=4, **SMALL)
    files_a, files_b, files_c = _files(a), _files(b), _files(c)
    assert files_a.keys() == files_b.keys()
    assert [k for k in files_a if files_a[k] != files_b[k]] == []
    assert any(k.endswith(".warc.gz") for k in files_a)
    for name in ("sources/sample_web/shard-0000.warc.gz", "ground_truth.parquet", "eval/sample_web/red_circle/0.png"):
        assert files_a[name] != files_c[name], name
    images = [k for k in files_a if k.startswith("site/img/") and k in files_c]
    assert images and all(files_a[k] != files_c[k] for k in images)


def test_generate_refuses_a_base_url_with_a_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no path"):
        generate(tmp_path, "http://127.0.0.1:8765/web", **SMALL)


class _Page(HTMLParser):
    """What a careful crawler sees: img tags outside comments and scripts, base href, robots meta."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs: list[dict[str, str | None]] = []
        self.base: str | None = None
        self.robots: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "base" and self.base is None:
            self.base = a.get("href")
        elif tag == "meta" and (a.get("name") or "").lower() == "robots":
            self.robots += [d.strip().lower() for d in (a.get("content") or "").split(",")]

    handle_startendtag = handle_starttag


def _warc_pages(web: SampleWeb) -> tuple[list[dict], Counter]:
    pages, records = [], Counter()
    for shard, path in enumerate(web.warc_paths):
        with path.open("rb") as fh:
            for rec in ArchiveIterator(fh):
                records[rec.rec_type] += 1
                assert rec.rec_headers.get_header("WARC-Date").startswith("2024-05-")
                if rec.rec_type != "response":
                    continue
                status = rec.http_headers.get_statuscode()
                ctype = rec.http_headers.get_header("Content-Type")
                body = rec.content_stream().read()
                if status != "200" or not ctype.startswith("text/html"):
                    records[f"skipped_{status}_{ctype.split(';')[0]}"] += 1
                    continue
                charset = ctype.split("charset=")[1]
                parser = _Page()
                parser.feed(body.decode(charset))
                url = rec.rec_headers.get_header("WARC-Target-URI")
                header = rec.http_headers.get_header("X-Robots-Tag")
                pages.append({"shard": shard, "url": url, "parser": parser, "header": header, "charset": charset})
    return pages, records


def test_warcs_parse_and_their_html_matches_the_ground_truth(web: tuple[SampleWeb, str], truth: list[dict]) -> None:
    sample, base_url = web
    pages, records = _warc_pages(sample)
    assert records["warcinfo"] == sample.n_shards
    assert (
        records["request"]
        == records["response"]
        == sample.n_pages + sum(v for k, v in sample.decoys.items() if k.startswith("record_"))
    )
    assert records["skipped_200_text/plain"] == records["skipped_404_text/html"] == sample.n_shards
    assert len(pages) == sample.n_pages == sample.html_counts["pages"]

    by_page: dict[str, list[dict]] = {}
    for row in truth:
        by_page.setdefault(row["page_url"], []).append(row)
    seen = Counter()
    for page in pages:
        p = page["parser"]
        rows = sorted(by_page[page["url"]], key=lambda r: r["position"])
        assert len(p.imgs) == len(rows), page["url"]  # comment and script decoys yield nothing
        resolve_base = urljoin(page["url"], p.base) if p.base else page["url"]
        for img, row in zip(p.imgs, rows, strict=True):
            assert img["src"] == row["src"]
            assert urljoin(resolve_base, img["src"]) == row["url"]
            text = img.get("alt") or (img.get("title") if "alt" not in img else None)
            assert (text or None) == row["caption"], (img, row)
            seen["relative"] += not img["src"].startswith(("http://", "data:"))
            seen["alt_text"] += bool(img.get("alt"))
        seen["base_href"] += p.base is not None
        seen["meta_opt_out"] += bool({"noai", "noimageai"} & set(p.robots))
        seen["header_opt_out"] += page["header"] == "noai"
        if page["charset"] == "iso-8859-1":
            seen["iso"] += 1
            assert any(r["kind"] == "non_english" and not r["caption"].isascii() for r in rows)
        opt_out = rows[0]["page_opt_out"]
        assert (opt_out is not None) == bool({"noai", "noimageai"} & set(p.robots) or page["header"])
        assert all(r["kind"] == "opt_out" for r in rows) == (opt_out is not None)

    counts = sample.html_counts
    assert seen["relative"] == counts["relative_src"]
    assert seen["alt_text"] == counts["alt_text"]
    assert seen["base_href"] == counts["base_href_pages"] > 0
    assert seen["meta_opt_out"] == counts["opt_out_meta_pages"] == 2 * sample.n_shards
    assert seen["header_opt_out"] == counts["opt_out_header_pages"] == 1
    assert seen["iso"] == counts["iso_8859_1_pages"] == sample.n_shards
    assert 0.3 < counts["relative_src"] / counts["img_tags"] < 0.5  # CommonCrawl: about 40% relative
    assert sum(p["url"].startswith(base_url) for p in pages) == len(pages)


def test_ground_truth_has_the_claimed_kinds_in_the_claimed_amounts(web: tuple[SampleWeb, str], truth: list[dict]):
    sample, _ = web
    kinds = Counter(r["kind"] for r in truth)
    assert kinds == Counter(sample.kind_counts)
    assert set(kinds) <= set(EXPECT) and all(r["expect"] == EXPECT[r["kind"]] for r in truth)
    ordinary = Counter(r["shard"] for r in truth if r["page_opt_out"] is None)
    for kind, frac in NOISE_FRACTIONS.items():
        assert kinds[kind] == sum(round(frac * n) for n in ordinary.values()), kind
        assert abs(kinds[kind] / len(truth) - frac) < 0.01, kind
    for kind, per_shard in PER_SHARD.items():
        assert kinds[kind] == per_shard * sample.n_shards, kind
    assert kinds["slow"] == 1 and 0.45 < kinds["clean"] / len(truth) < 0.6
    assert 2000 <= sample.n_links <= 3000 and sample.n_shards == 4

    by_url = {}
    for r in truth:
        by_url.setdefault(r["url"], r)
    for r in truth:
        if r["kind"] in ("exact_dup", "near_dup", "repeat_url"):
            orig = by_url[r["duplicate_of"]]
            assert orig["kind"] == "clean" and orig["link_id"] < r["link_id"] and orig["concept"] == r["concept"]
            assert (r["sha256"] == orig["sha256"]) == (r["kind"] != "near_dup")
            assert (r["caption"] == orig["caption"]) == (r["kind"] == "repeat_url")
            assert (r["url"] == orig["url"]) == (r["kind"] == "repeat_url")
        if r["kind"] == "mismatch":
            assert r["caption_concept"] not in (None, r["concept"])
        if r["kind"] == "non_english":
            assert r["lang"] in ("de", "fr", "es")
        if r["kind"] == "tiny":
            assert max(r["width"], r["height"]) < 100
        if r["kind"] == "banner":
            assert r["width"] / r["height"] > 3 and min(r["width"], r["height"]) >= 200
        if r["kind"] == "clean":
            assert r["caption_concept"] == r["concept"] and r["lang"] == "en" and min(r["width"], r["height"]) >= 200
            assert len(r["caption"].split()) > 2 and len(r["caption"]) > 5
        if r["kind"] == "short_caption":
            assert len(r["caption"].split()) <= 2
    shards_of_dups = {(by_url[r["duplicate_of"]]["shard"], r["shard"]) for r in truth if r["kind"] == "exact_dup"}
    assert any(a != b for a, b in shards_of_dups), "some exact duplicates should cross shards"


def test_concepts_are_long_tailed_and_all_present(truth: list[dict]) -> None:
    counts = Counter(r["concept"] for r in truth if r["concept"])
    clean = Counter(r["concept"] for r in truth if r["kind"] == "clean")
    ranked = ranked_concepts()
    assert set(counts) == set(CONCEPTS)
    assert counts[ranked[0]] > 15 * counts[ranked[-1]]
    assert counts[ranked[0]] / sum(counts.values()) > 0.15
    assert min(counts.values()) >= 10 and min(clean[c] for c in CONCEPTS) >= 3


def test_served_files_match_the_ground_truth(web: tuple[SampleWeb, str], truth: list[dict]) -> None:
    sample, _ = web
    files = [r for r in truth if r["file"]]
    assert len({r["file"] for r in files}) == sample.n_image_files
    for r in files:
        data = (sample.site_dir / r["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
    for r in files[:200]:
        if r["kind"] != "corrupt":
            with Image.open(sample.site_dir / r["file"]) as im:
                assert im.size == (r["width"], r["height"])
    for r in (r for r in truth if r["kind"] == "corrupt"):
        with pytest.raises(OSError), Image.open(sample.site_dir / r["file"]) as im:
            im.load()


def _get(url: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_server_serves_images_and_the_broken_routes(web: tuple[SampleWeb, str], truth: list[dict]) -> None:
    _, url = web
    assert urlsplit(url).hostname == "127.0.0.1"
    first = {}
    for r in truth:
        first.setdefault(r["kind"], r)

    status, headers, body = _get(first["clean"]["url"])
    assert status == 200 and headers["Content-Type"].startswith("image/")
    assert hashlib.sha256(body).hexdigest() == first["clean"]["sha256"]
    assert _get(first["not_found"]["url"])[0] == 404
    assert _get(first["server_error"]["url"])[0] == 500
    status, headers, body = _get(first["html_as_image"]["url"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body.lstrip().startswith(b"<!DOCTYPE html>")
    status, _, body = _get(first["redirect"]["url"])
    assert status == 200 and hashlib.sha256(body).hexdigest() == first["redirect"]["sha256"]
    assert _get(first["redirect_loop"]["url"])[0] == 302  # urllib gives up on the loop
    status, headers, _ = _get(first["noai_image"]["url"])
    assert status == 200 and headers["X-Robots-Tag"] == "noai"
    assert _get(url + "/redirect?to=" + "/status/404/x")[0] == 404

    conn = http.client.HTTPConnection("127.0.0.1", int(urlsplit(url).port), timeout=5)
    for path in ("/../ground_truth.parquet", "/%2e%2e/ground_truth.parquet", "/img/../../sample_web.json"):
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404, path
    conn.request("HEAD", urlsplit(first["clean"]["url"]).path)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"" and int(resp.headers["Content-Length"]) > 0
    conn.close()


def test_slow_route_waits_then_answers(web: tuple[SampleWeb, str], truth: list[dict]) -> None:
    _, url = web
    slow = next(r for r in truth if r["kind"] == "slow")
    assert slow["url"].startswith(url + "/slow/3/")
    start = time.monotonic()
    status, _, body = _get(url + "/slow/0.5/" + slow["file"])
    assert 0.45 < time.monotonic() - start < 5
    assert status == 200 and hashlib.sha256(body).hexdigest() == slow["sha256"]
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(url + "/slow/2/" + slow["file"], timeout=0.3)


def test_eval_split_covers_every_class_and_shares_no_bytes_with_training(
    web: tuple[SampleWeb, str], truth: list[dict]
) -> None:
    sample, _ = web
    classes = json.loads((sample.eval_dir / "classes.json").read_text())
    templates = json.loads((sample.eval_dir / "templates.json").read_text())
    assert classes == list(CONCEPTS) and all("{}" in t for t in templates)
    train = {r["sha256"] for r in truth if r["sha256"]}
    n = 0
    for name in classes:
        images = sorted((sample.eval_dir / name.replace(" ", "_")).glob("*.png"))
        assert len(images) >= 5
        for path in images:
            assert hashlib.sha256(path.read_bytes()).hexdigest() not in train
            n += 1
    assert n == sample.n_eval_images
    with Image.open(images[0]) as im:
        assert im.size == (224, 224)
    for r in (r for r in truth if r["kind"] == "eval_leak"):
        assert (sample.root / r["duplicate_of"]).is_file()


def test_cli_generates_and_serves(tmp_path: Path) -> None:
    args = ["--shards", "1", "--pages-per-shard", "8", "--images-per-page", "6", "--eval-per-class", "1"]
    assert cli_main(["generate", "--out", str(tmp_path), "--base-url", "http://127.0.0.1:1", *args]) == 0
    manifest = json.loads((tmp_path / "sample_web.json").read_text())
    assert manifest["n_links"] == 48 and manifest["warc_paths"] == ["sources/sample_web/shard-0000.warc.gz"]

    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.sample_web", "serve", "--site", str(tmp_path / "site"), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = json.loads(proc.stdout.readline())["url"]
        image = next((tmp_path / "site" / "img" / "s0").iterdir())
        assert _get(f"{url}/img/s0/{image.name}")[2] == image.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_many_concurrent_requests_all_succeed(web: tuple[SampleWeb, str], truth: list[dict]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    urls = [r["url"] for r in truth if r["kind"] == "clean"][:400]
    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(lambda u: _get(u, timeout=20)[0], urls))
    assert statuses == [200] * len(urls)


def test_images_decode_to_the_advertised_formats(web: tuple[SampleWeb, str], truth: list[dict]) -> None:
    sample, _ = web
    for r in [r for r in truth if r["kind"] in ("clean", "near_dup", "tiny", "banner")][:100]:
        data = (sample.site_dir / r["file"]).read_bytes()
        with Image.open(BytesIO(data)) as im:
            assert im.format == ("PNG" if r["file"].endswith(".png") else "JPEG") and im.mode == "RGB"


HARD = {"n_shards": 2, "pages_per_shard": 20, "images_per_page": 10, "eval_per_class": 2}


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleWeb, list[dict]]:
    web = generate(tmp_path_factory.mktemp("hard"), "http://127.0.0.1:8765", mode="hard", seed=2, **HARD)
    return web, pq.read_table(web.ground_truth_path).to_pylist()


def test_about_half_the_hard_captions_are_bad_and_the_truth_says_which(hard) -> None:
    web, truth = hard
    assert web.mode == "hard" and web.n_links == 400
    kinds = Counter(r["kind"] for r in truth)
    ordinary = Counter(r["shard"] for r in truth if r["page_opt_out"] is None)
    for kind, frac in HARD_NOISE_FRACTIONS.items():
        assert kinds[kind] == sum(round(frac * n) for n in ordinary.values()), kind
    worth = Counter(r["caption_truth"] for r in truth if r["caption_truth"] is not None)
    bad = worth["mismatched"] + worth["generic"] + worth["junk"]
    assert 0.45 < bad / sum(worth.values()) < 0.55
    for r in truth:
        assert r["caption_truth"] == caption_truth(r["kind"], r["concept"], r["caption"], r["caption_concept"])
        if r["kind"] in ("clean", "exact_dup", "near_dup", "title_only"):
            assert r["caption_truth"] == "correct"
        if r["kind"] == "mismatch":
            assert r["caption_truth"] == "mismatched" and r["caption_concept"] != r["concept"]
        if r["kind"] == "generic":
            assert r["caption_truth"] == "generic" and not any(c in r["caption"] for c in CONCEPTS)
            assert len(r["caption"].split()) > 2  # passes the caption-length heuristic: a judge must catch it
    assert {r["caption_truth"] for r in truth if r["kind"] == "junk_alt"} == {"junk"}


def test_hard_mismatches_favour_look_alikes_and_the_head(hard) -> None:
    _, truth = hard
    wrong = [(r["concept"].split(), r["caption_concept"].split()) for r in truth if r["kind"] == "mismatch"]
    alike = sum(
        (a[1] == b[1] and b[0] in LOOK_ALIKE_COLOURS[a[0]]) or (a[0] == b[0] and b[1] in LOOK_ALIKE_SHAPES[a[1]])
        for a, b in wrong
    )
    assert 0.4 < alike / len(wrong) < 0.75  # half on purpose, a few more by chance from the head
    named = Counter(" ".join(b) for _, b in wrong)
    head = set(ranked_concepts()[:8])
    assert sum(named[c] for c in head) / len(wrong) > 0.3  # 8 of 48 concepts


def test_hard_web_has_look_alike_product_shots_in_training_and_eval(hard) -> None:
    web, truth = hard
    own = [r for r in truth if r["style"] is not None and r["kind"] not in ("tiny", "banner", "eval_leak")]
    products = [r for r in own if r["style"] == "product"]
    assert 0.3 < len(products) / len(own) < 0.5
    for r in products:
        if r["kind"] not in ("near_dup", "corrupt"):  # resized or cropped copies, cut files
            assert 200 <= r["width"] == r["height"] <= 240
    for r in truth:
        if r["kind"] in ("exact_dup", "near_dup", "repeat_url"):
            original = next(o for o in truth if o["url"] == r["duplicate_of"])
            assert r["style"] == original["style"]
    with (
        Image.open(web.eval_dir / "red_circle" / "1.png") as product,
        Image.open(web.eval_dir / "red_circle" / "0.png") as varied,
    ):
        flat = [im.convert("L").crop((0, 0, 40, 40)) for im in (product, varied)]
        spread = [max(f.getextrema()) - min(f.getextrema()) for f in flat]
    assert spread[0] < spread[1]  # a product's backdrop is nearly flat


def test_product_shots_of_one_concept_are_not_near_duplicates(hard) -> None:
    """Look-alike is the point, duplicate is not: dedup's pHash must tell two catalogue shots of one concept apart,
    or it would drop the very samples a judge is meant to tell from their mismatched neighbours."""
    web, truth = hard
    products = [r for r in truth if r["style"] == "product" and r["kind"] == "clean"]
    images = []
    for r in products:
        with Image.open(web.site_dir / r["file"]) as im:
            images.append(im.convert("RGB"))
    bits = np.unpackbits(phash_many(images).view(np.uint8).reshape(len(images), -1), axis=1)
    pairs = combinations(range(len(products)), 2)
    same = [(i, j) for i, j in pairs if products[i]["concept"] == products[j]["concept"]]
    assert len(same) > 10
    closest = min(int(np.count_nonzero(bits[i] != bits[j])) for i, j in same)
    # well clear of the radius, not just past it: other seeds land closer, and a deployment may widen the radius
    # (flat, unprinted product shots of one concept come as close as 0-6 bits)
    assert closest > 4 * DedupConfig().phash_radius


def test_hard_mode_is_deterministic_and_the_standard_truth_gains_caption_worth(tmp_path: Path, truth) -> None:
    base = "http://127.0.0.1:8765"
    one_shard = {**HARD, "n_shards": 1}
    generate(tmp_path / "a", base, seed=1, mode="hard", **one_shard)
    generate(tmp_path / "b", base, seed=1, mode="hard", **one_shard)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a.keys() == files_b.keys() and all(files_a[k] == files_b[k] for k in files_a)
    assert json.loads(files_a["sample_web.json"])["params"]["mode"] == "hard"
    with pytest.raises(ValueError, match="mode"):
        generate(tmp_path / "c", base, mode="harder", **SMALL)
    assert {r["style"] for r in truth} == {"varied", None}
    worth = Counter(r["caption_truth"] for r in truth if r["kind"] in ("clean", "mismatch", "junk_alt"))
    assert worth == Counter({"correct": sum(r["kind"] == "clean" for r in truth)}) + Counter(
        {"mismatched": sum(r["kind"] == "mismatch" for r in truth), "junk": sum(r["kind"] == "junk_alt" for r in truth)}
    )


# The standard web (SMALL, seed 3) as the project generated it before the hard mode existed: its crawl input,
# served files and eval split, everything but the ground truth's new columns and the recorded parameters.
STANDARD_DIGEST = "dd452c6b4faa3a41d16242f76c9b02abaee759fe9fd3dff43aed977f60ca170d"


def test_the_standard_web_is_byte_identical_to_before_the_hard_mode(tmp_path: Path) -> None:
    """``make demo`` must not change: the hard mode draws its own randomness, never the standard web's."""
    generate(tmp_path, "http://127.0.0.1:8765", seed=3, **SMALL)
    files = _files(tmp_path)
    digest = hashlib.sha256()
    for name in sorted(set(files) - {"ground_truth.parquet", "sample_web.json"}):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    assert digest.hexdigest() == STANDARD_DIGEST
