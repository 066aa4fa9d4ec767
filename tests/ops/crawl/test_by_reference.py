"""Sources by reference: Common Crawl ``*.paths.gz`` manifests under ``sources/`` whose lines name WARC/WAT files on
a real HTTP server on 127.0.0.1 and on a real S3-protocol server (moto), crawled where they lie.

The reference for every shard is the same file copied into the lake and crawled from there: the tables must be
equal, row for row, and so must the books of the read.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import s3fs

from infra.lake import Lake
from infra.remote import RemoteConfig, RemoteSourceError
from infra.sample_web.mirror import MirrorServer
from infra.synthetic.wat import write_wat
from ops import graph
from ops.crawl import CrawlConfig, crawl_shard
from ops.sources import registry, source_for, sync
from tests.conftest import FIXTURES
from tests.ops.crawl.crawling import check_accounting

WARCS = ["sample-0000.warc.gz", "sample-0001.warc.gz", "resiliparse-commoncrawl.warc.gz", "resiliparse-clipped.warc.gz"]
FAST = RemoteConfig(chunk_bytes=1 << 16, retries=2, backoff_s=0.01, timeout_s=10)
PREFIX = "crawl-data/CC-MAIN-2020-34/segments/1596439735792.85"


@pytest.fixture(scope="module")
def crawl_files(tmp_path_factory) -> Path:
    """The fixture WARCs, and a WAT made from one, laid out as Common Crawl lays out a crawl."""
    root = tmp_path_factory.mktemp("cc")
    for name in WARCS:
        dest = root / PREFIX / "warc" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / "warc" / name, dest)
    wat = root / PREFIX / "wat" / "sample-0000.warc.wat.gz"
    wat.parent.mkdir(parents=True)
    write_wat(FIXTURES / "warc" / "sample-0000.warc.gz", wat)
    return root


@pytest.fixture
def mirror(crawl_files):
    with MirrorServer(crawl_files) as server:
        yield server


def _manifest(lake: Lake, rel: str, lines: list[str], base: str | None) -> None:
    lake.write_bytes(rel, gzip.compress("".join(f"{line}\n" for line in lines).encode()))
    if base is not None:
        lake.write_bytes(f"{rel.rsplit('/', 1)[0]}/base_url", f"{base}\n".encode())


def _same_as_from_the_lake(lake: Lake, crawl_files: Path, key: str, path: str, config: CrawlConfig) -> None:
    """Crawl ``key`` by reference, then the same file from the lake, and compare tables and books."""
    report = crawl_shard(lake, source_for(lake, key), key, config)
    remote_rows = lake.read_parquet(graph.stage("crawl").table(key))
    check_accounting(report, remote_rows.to_pylist())
    local = f"sources/copies/{Path(path).name}"
    Path(lake.path(local)).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(crawl_files / path, lake.path(local))
    expected = crawl_shard(lake, local, "copy", config)
    assert remote_rows.equals(lake.read_parquet(graph.stage("crawl").table("copy")))
    assert {k: v for k, v in report.extra.items() if not k.startswith("seconds")} == {
        k: v for k, v in expected.extra.items() if not k.startswith("seconds")
    }
    lake.delete(local)


def test_a_manifest_over_http_registers_a_shard_per_line_and_crawls_them_in_place(tmp_path, mirror, crawl_files):
    lake = Lake(str(tmp_path / "lake"))
    _manifest(lake, "sources/cc/warc.paths.gz", [f"{PREFIX}/warc/{n}" for n in WARCS[:2]], mirror.url)
    _manifest(lake, "sources/cc/wat.paths.gz", [f"{PREFIX}/wat/sample-0000.warc.wat.gz"], None)
    new, refused = sync(lake, known=set())
    assert refused == []
    assert new == ["cc.warc.sample-0000", "cc.warc.sample-0001", "cc.wat.sample-0000"]
    assert registry(lake)["cc.wat.sample-0000"]["path"] == f"{mirror.url}/{PREFIX}/wat/sample-0000.warc.wat.gz"
    config = CrawlConfig(remote=FAST)
    for key in new:
        kind, name = key.split(".")[1], key.split(".", 2)[2]
        path = f"{PREFIX}/{kind}/{name}.warc.gz" if kind == "warc" else f"{PREFIX}/wat/{name}.warc.wat.gz"
        _same_as_from_the_lake(lake, crawl_files, key, path, config)
    assert sorted(lake.list("sources")) == [
        "sources/cc/base_url",
        "sources/cc/warc.paths.gz",
        "sources/cc/wat.paths.gz",
    ]  # nothing was copied into the lake

    _manifest(lake, "sources/cc/warc.paths.gz", [f"{PREFIX}/warc/{n}" for n in WARCS], None)  # lines appended
    assert sync(lake, known=set(new)) == (["cc.warc.resiliparse-clipped", "cc.warc.resiliparse-commoncrawl"], [])


def test_a_transfer_cut_mid_file_resumes_and_gives_the_same_pairs(tmp_path, mirror, crawl_files):
    lake = Lake(str(tmp_path / "lake"))
    path = f"{PREFIX}/warc/sample-0001.warc.gz"
    _manifest(lake, "sources/cc/warc.paths.gz", [path], mirror.url)
    [key], _ = sync(lake, known=set())
    mirror.cut(f"/{path}", 200_000)
    _same_as_from_the_lake(lake, crawl_files, key, path, CrawlConfig(remote=FAST))
    starts = mirror.gets(f"/{path}")
    assert starts[:5] == [0, 65536, 131072, 196608, 196608]  # the cut range again, from its own start


def test_a_line_that_404s_fails_only_its_own_shard(tmp_path, mirror, crawl_files):
    lake = Lake(str(tmp_path / "lake"))
    lines = [f"{PREFIX}/warc/sample-0000.warc.gz", f"{PREFIX}/warc/deleted-0000.warc.gz"]
    _manifest(lake, "sources/cc/warc.paths.gz", lines, mirror.url)
    new, _ = sync(lake, known=set())
    assert new == ["cc.warc.deleted-0000", "cc.warc.sample-0000"]
    config = CrawlConfig(remote=FAST)
    with pytest.raises(RemoteSourceError, match=rf"{mirror.url}/{PREFIX}/warc/deleted-0000\.warc\.gz is not there"):
        crawl_shard(lake, source_for(lake, "cc.warc.deleted-0000"), "cc.warc.deleted-0000", config)
    assert not lake.exists(graph.stage("crawl").table("cc.warc.deleted-0000"))
    assert mirror.gets(f"/{PREFIX}/warc/deleted-0000.warc.gz") == []  # the HEAD said so: nothing retried
    crawl_shard(lake, source_for(lake, "cc.warc.sample-0000"), "cc.warc.sample-0000", config).check()


def test_a_manifest_on_s3_by_reference(tmp_path, s3_server, crawl_files, monkeypatch):
    """The files on a credentialed S3 server (moto), the lake a local folder: the crawl signs with AWS_* variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    fs = s3fs.S3FileSystem(**s3_server.storage_options(), skip_instance_cache=True)
    if not fs.exists("crawl-bucket"):
        fs.mkdir("crawl-bucket")
    fs.put(str(crawl_files / "crawl-data"), "crawl-bucket/crawl-data", recursive=True)
    lake = Lake(str(tmp_path / "lake"))
    path = f"{PREFIX}/warc/resiliparse-commoncrawl.warc.gz"
    _manifest(lake, "sources/cc/warc.paths.gz", [path, f"{PREFIX}/warc/missing.warc.gz"], "s3://crawl-bucket")
    assert sync(lake, known=set()) == (["cc.warc.missing", "cc.warc.resiliparse-commoncrawl"], [])
    assert source_for(lake, "cc.warc.resiliparse-commoncrawl") == f"s3://crawl-bucket/{path}"
    config = CrawlConfig(remote=RemoteConfig(endpoint_url=s3_server.endpoint_url, chunk_bytes=1 << 15, retries=1))
    _same_as_from_the_lake(lake, crawl_files, "cc.warc.resiliparse-commoncrawl", path, config)
    with pytest.raises(RemoteSourceError, match=r"s3://crawl-bucket/.*/missing\.warc\.gz is not there"):
        crawl_shard(lake, source_for(lake, "cc.warc.missing"), "cc.warc.missing", config)
