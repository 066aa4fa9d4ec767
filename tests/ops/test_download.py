"""download really runs img2dataset against a local HTTP server on 127.0.0.1, broken URLs included."""

from __future__ import annotations

import importlib
import io
import tarfile
import urllib.parse
import urllib.request

import img2dataset.distributor
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from infra.lake import Lake
from infra.sample_web import serve
from ops import graph
from ops.crawl.shard import CrawlConfig
from ops.download import REASONS, DownloadConfig, download_shard, paths
from ops.ledger import check_ledger, kept_uids
from ops.stage import conservation_problems
from tests.conftest import free_port
from tests.ops.bombs import HOSTILE
from tests.ops.lakes import Pair, crawl

LOOPBACK = ("127.0.0.1/32",)


def _jpeg(color: tuple[int, int, int], size: int = 96) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "img").mkdir()
    for i, color in enumerate([(200, 10, 10), (10, 200, 10), (10, 10, 200)]):
        (root / "img" / f"ok{i}.jpg").write_bytes(_jpeg(color))
    (root / "img" / "corrupt.jpg").write_bytes(_jpeg((9, 9, 9))[:200])
    (root / "img" / "zero.jpg").write_bytes(b"")
    bomb = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(bomb, format="PNG")  # ~140 kB on disk, 144 M pixels decoded
    (root / "img" / "bomb.png").write_bytes(bomb.getvalue())
    (root / "img" / "note.txt").write_bytes(b"plain text, not an image")
    (root / "noai").mkdir()
    (root / "noai" / "ok1.jpg").write_bytes(_jpeg((5, 5, 5)))
    with serve(root) as server:
        yield server


def _crawl_table(lake: Lake, shard: str, urls: dict[str, str]) -> dict[str, str]:
    """Crawl a URL list of these links (loopback admitted, as the demo does) plus one pair the crawl drops;
    returns name -> uid of the links."""
    pairs = [Pair(name, f"caption {name}", link=url) for name, url in urls.items()]
    pairs.append(Pair("dropped", "", link="http://127.0.0.1/never"))  # no text: dropped at crawl
    uids = crawl(lake, shard, pairs, CrawlConfig(allow_networks=("127.0.0.0/8",)))
    return {name: uids[name] for name in urls}


def test_real_download_records_every_failure_with_its_reason(site, tmp_path):
    lake = Lake(str(tmp_path))
    base = site.url
    urls = {
        "ok0": f"{base}/img/ok0.jpg",
        "ok1": f"{base}/img/ok1.jpg",
        "ok2_redirected": f"{base}/redirect?to=/img/ok2.jpg",
        "missing": f"{base}/status/404/img/missing.jpg",
        "server_error": f"{base}/status/500/img/x.jpg",
        "html": f"{base}/html-as-image/img/x.jpg",
        "corrupt": f"{base}/img/corrupt.jpg",
        "zero_bytes": f"{base}/img/zero.jpg",
        "slow": f"{base}/slow/4/img/ok0.jpg",
        "loop": f"{base}/redirect-loop/a",
        "opt_out": f"{base}/noai/ok1.jpg",
        "refused": f"http://127.0.0.1:{free_port()}/img/ok0.jpg",
        "bomb": f"{base}/img/bomb.png",
        "text_file": f"{base}/img/note.txt",
    }
    uids = _crawl_table(lake, "s1", urls)
    report = download_shard(
        lake,
        "s1",
        DownloadConfig(
            image_size=64, timeout=1, retries=0, thread_count=8, allow_networks=LOOPBACK, max_image_pixels=50_000_000
        ),
    )

    ledger = lake.read_parquet(paths("s1")["ledger"])
    by_uid = dict(zip(ledger["uid"].to_pylist(), ledger["reason"].to_pylist(), strict=True))
    got = {name: by_uid[uid] for name, uid in uids.items()}
    assert got == {
        "ok0": "",
        "ok1": "",
        "ok2_redirected": "",
        "missing": "http_client_error",
        "server_error": "http_server_error",
        "html": "not_an_image",
        "corrupt": "not_an_image",
        "zero_bytes": "not_an_image",
        "slow": "timeout",
        "loop": "redirect_error",
        "opt_out": "opt_out",
        "refused": "connection_error",
        "bomb": "decompression_bomb",
        "text_file": "not_an_image",
    }
    assert all(ledger.filter(pa.compute.invert(ledger["kept"]))["error_message"].to_pylist())
    assert (report.rows_in, report.rows_kept) == (14, 3)
    crawled = lake.read_parquet(graph.stage("crawl").table("s1"))
    assert check_ledger(ledger, REASONS, report=report, expected_uids=kept_uids(crawled)) == []
    assert conservation_problems(lake, graph.stage("download"), "s1") == []  # ledger, report and tar agree

    with tarfile.open(lake.path(paths("s1")["tar"])) as tf:
        names = sorted(m.name for m in tf.getmembers())
        jpgs = [n for n in names if n.endswith(".jpg")]
        assert len(jpgs) == 3
        img = Image.open(tf.extractfile(jpgs[0]))
        assert max(img.size) <= 96
    assert lake.read_json(paths("s1")["stats"])["count"] == 14
    assert lake.read_json(paths("s1")["report"])["rows_kept"] == 3


def test_rerun_is_idempotent_and_empty_shards_publish(site, tmp_path):
    lake = Lake(str(tmp_path))
    _crawl_table(lake, "s2", {f"ok{i}": f"{site.url}/img/ok{i}.jpg" for i in range(3)})
    config = DownloadConfig(image_size=64, timeout=5, retries=1, thread_count=4, allow_networks=LOOPBACK)
    first = download_shard(lake, "s2", config)
    ledger1 = lake.read_parquet(paths("s2")["ledger"])
    tar1 = _tar_payloads(lake.path(paths("s2")["tar"]))
    second = download_shard(lake, "s2", config)
    assert (first.rows_in, first.rows_kept) == (second.rows_in, second.rows_kept) == (3, 3)
    assert lake.read_parquet(paths("s2")["ledger"]).equals(ledger1)
    assert _tar_payloads(lake.path(paths("s2")["tar"])) == tar1
    assert not [p for p in lake.list("download") if "tmp" in p]

    _crawl_table(lake, "empty", {})
    report = download_shard(lake, "empty", config)
    assert (report.rows_in, report.rows_kept) == (0, 0)
    assert pq.read_table(lake.path(paths("empty")["ledger"])).num_rows == 0
    assert _tar_payloads(lake.path(paths("empty")["tar"])) == {}


def _tar_payloads(path: str) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def test_guard_refuses_non_public_addresses_directly_by_name_and_after_redirects(site, tmp_path):
    lake = Lake(str(tmp_path))
    port = site.port
    urls = {
        "allowed": f"http://127.0.0.1:{port}/img/ok0.jpg",
        "other_loopback": f"http://127.0.0.2:{port}/img/ok0.jpg",
        "redirect_to_private": f"http://127.0.0.1:{port}/redirect?to=http://127.0.0.2:{port}/img/ok1.jpg",
        "redirect_to_file": f"http://127.0.0.1:{port}/redirect?to=file:///etc/passwd",
    }
    uids = _crawl_table(lake, "g", urls)
    download_shard(
        lake, "g", DownloadConfig(image_size=64, timeout=2, retries=0, thread_count=4, allow_networks=("127.0.0.1/32",))
    )
    ledger = lake.read_parquet(paths("g")["ledger"])
    by_uid = dict(zip(ledger["uid"].to_pylist(), ledger["reason"].to_pylist(), strict=True))
    got = {name: by_uid[uid] for name, uid in uids.items()}
    assert got["allowed"] == ""
    assert got["other_loopback"] == got["redirect_to_private"] == "private_address"
    assert got["redirect_to_file"] == "redirect_error"

    none_allowed = Lake(str(tmp_path / "strict"))
    by_name = f"http://localhost:{port}/img/ok0.jpg"  # a host name that resolves to loopback
    _crawl_table(none_allowed, "g", {"ip": urls["allowed"], "by_name": by_name})
    report = download_shard(none_allowed, "g", DownloadConfig(image_size=64, timeout=2, retries=0, thread_count=2))
    assert dict(report.dropped) == {"private_address": 2}


def test_shard_downloads_in_this_process_and_leaves_urlopen_as_it_was(site, tmp_path, monkeypatch):
    """img2dataset's process pool is not used (it would import img2dataset again in a fresh interpreter), and the
    guarded opener, which urlopen shares process-wide, is gone once the shard is done, failed shard or not."""

    def no_pool(*_args, **_kwargs):
        raise AssertionError("img2dataset's multiprocessing distributor was used")

    monkeypatch.setattr(img2dataset.distributor, "get_context", no_pool)
    before = urllib.request._opener
    lake = Lake(str(tmp_path))
    uids = _crawl_table(lake, "p", {"ok": f"http://127.0.0.1:{site.port}/img/ok0.jpg"})
    report = download_shard(lake, "p", DownloadConfig(image_size=64, timeout=2, retries=0, allow_networks=LOOPBACK))
    assert report.rows_kept == 1 and kept_uids(lake.read_parquet(paths("p")["ledger"])) == list(uids.values())
    assert urllib.request._opener is before
    main = importlib.import_module("img2dataset.main")  # the package's attribute `main` is the CLI function
    assert main.multiprocessing_distributor is img2dataset.distributor.multiprocessing_distributor


# --- bounded requests, the shared opt-out rule, bombs in every format ---------------------------------------------

ROBOT_SCOPES = ("", "otherbot: ", "CLIPFOUNDRY: ", "googlebot-image:")
ROBOT_DIRECTIVES = ("noai", "NoImageAI", "noindex", "noimageindex", "none", "nofollow", "noarchive", "all", "x")
REFUSING = {"noai", "noimageai", "noindex", "noimageindex", "none"}


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "img").mkdir()
    (root / "img" / "ok.jpg").write_bytes(_jpeg((120, 30, 200)))
    for kind, make in HOSTILE.items():
        (root / "img" / f"bomb-{kind}").write_bytes(make(60_000, 60_000))
    with serve(root) as server:
        yield server


def test_requests_are_bounded_opt_outs_follow_the_crawl_rule_and_bombs_never_decode(hostile_site, tmp_path):
    """img2dataset for real against a server that trickles, streams without end, declares gigabytes, scopes its
    opt-outs to other crawlers and serves 3.6-gigapixel headers in every format the issue named: each URL gets its
    own reason, nothing holds a thread past the deadline, nothing is decoded."""
    base = hostile_site.url
    urls = {
        "ok": f"{base}/img/ok.jpg",
        "trickle": f"{base}/trickle/0.5/img/ok.jpg",
        "endless": f"{base}/endless/200000000",
        "declared": f"{base}/declared/999999999/img/ok.jpg",
    }
    expected = {"ok": "", "trickle": "deadline_exceeded", "endless": "body_too_large", "declared": "body_too_large"}
    for scope in ROBOT_SCOPES:
        for directive in ROBOT_DIRECTIVES:
            name = f"robots[{scope}{directive}]"
            urls[name] = f"{base}/robots/{urllib.parse.quote(scope + directive)}/img/ok.jpg"
            expected[name] = "opt_out" if directive.lower() in REFUSING else ""
    for kind in HOSTILE:
        urls[f"bomb-{kind}"] = f"{base}/img/bomb-{kind}"
        expected[f"bomb-{kind}"] = "decompression_bomb"
    lake = Lake(str(tmp_path))
    uids = _crawl_table(lake, "h", urls)
    config = DownloadConfig(
        image_size=64,
        timeout=1,
        retries=0,
        thread_count=16,
        allow_networks=LOOPBACK,
        max_image_pixels=50_000_000,
        request_deadline=2.0,
        max_body_bytes=1 << 20,
    )
    report = download_shard(lake, "h", config)
    ledger = lake.read_parquet(paths("h")["ledger"])
    by_uid = dict(zip(ledger["uid"].to_pylist(), ledger["reason"].to_pylist(), strict=True))
    assert {name: by_uid[uid] for name, uid in uids.items()} == expected
    crawled = lake.read_parquet(graph.stage("crawl").table("h"))
    assert check_ledger(ledger, REASONS, report=report, expected_uids=kept_uids(crawled)) == []
    assert conservation_problems(lake, graph.stage("download"), "h") == []  # ledger, report and tar agree
