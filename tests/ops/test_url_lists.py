"""URL lists as users have them: a LAION-style and a DataComp-style parquet, each with its own column names, through
the real crawl and the real download (img2dataset against a local HTTP server on 127.0.0.1), and on into dataset
samples that carry the list's uid and columns."""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow as pa
import pytest
from PIL import Image

from infra.lake import Lake
from infra.sample_web import serve
from ops import graph
from ops.crawl.records import UrlListConfig
from ops.crawl.shard import CrawlConfig, crawl_shard
from ops.dataset.selection import select_shard
from ops.download import DownloadConfig, download_shard, iter_tar_samples
from ops.stage import conservation_problems

LOOPBACK_CRAWL = CrawlConfig(allow_networks=("127.0.0.0/8",))
LOOPBACK_DOWNLOAD = DownloadConfig(allow_networks=("127.0.0.1/32",), thread_count=4, retries=0, timeout=5)


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    for i in range(4):
        (root / f"img{i}.jpg").write_bytes(_jpeg((60 * i, 200 - 40 * i, 30)))
    with serve(root) as server:
        yield server, root


def _crawled(lake: Lake, shard: str) -> list[dict]:
    return lake.read_parquet(graph.stage("crawl").table(shard)).to_pylist()


def test_datacomp_list_keeps_its_uid_and_a_wrong_sha256_is_its_own_drop_reason(site, tmp_path):
    server, root = site
    lake = Lake(str(tmp_path))
    digests = [hashlib.sha256((root / f"img{i}.jpg").read_bytes()).hexdigest() for i in range(4)]
    digests[2] = hashlib.sha256(b"another image").hexdigest()  # the list is wrong about this one
    digests[3] = digests[3].upper()  # hex in capitals is the same hash
    uids = [f"{i:032x}" for i in (7, 8, 9, 10)]
    lake.write_parquet(
        "sources/datacomp/part-0.parquet",
        pa.table(
            {
                "uid": uids,
                "url": [f"{server.url}/img{i}.jpg" for i in range(4)],
                "text": [f"a datacomp photo number {i}" for i in range(4)],
                "original_width": [64] * 4,
                "original_height": [48] * 4,
                "sha256": digests,
            }
        ),
    )
    report = crawl_shard(lake, "sources/datacomp/part-0.parquet", "dc", LOOPBACK_CRAWL)
    rows = _crawled(lake, "dc")
    assert report.rows_kept == 4
    assert [r["source_uid"] for r in rows] == uids
    assert rows[3]["expected_sha256"] == digests[3].lower()
    assert json.loads(rows[0]["source_fields"]) == {"original_height": 48, "original_width": 64}

    download = download_shard(lake, "dc", LOOPBACK_DOWNLOAD)
    ledger = lake.read_parquet(graph.stage("download").table("dc")).to_pylist()
    assert [r["reason"] for r in ledger] == ["", "", "hash_mismatch", ""]
    assert download.dropped == {"hash_mismatch": 1}
    assert (download.extra["sha256_claimed"], download.extra["sha256_checked"]) == (4, 4)
    assert download.extra["tar_samples"] == 3  # the image that is not the one listed is not in the tar
    tar_uids = [json.loads(files["json"])["uid"] for _, files in iter_tar_samples(lake, "dc")]  # headers verified
    assert sorted(tar_uids) == sorted(r["uid"] for r in ledger if r["kept"])  # img2dataset writes in arrival order
    assert conservation_problems(lake, graph.stage("download"), "dc") == []
    selected, _ = select_shard(lake, "dc", "download", None, {})
    by_uid = {rows[i]["uid"]: rows[i]["source_uid"] for i in range(4)}
    assert {s.source_uid for s in selected.values()} == {by_uid[r["uid"]] for r in ledger if r["kept"]}


def test_laion_list_with_its_own_column_names_and_a_mapping_for_odd_ones(site, tmp_path):
    server, _ = site
    lake = Lake(str(tmp_path))
    lake.write_parquet(
        "sources/laion/part-0.parquet",
        pa.table(
            {
                "SAMPLE_ID": ["11", "12", "9" * 300],
                "URL": [f"{server.url}/img{i}.jpg" for i in range(3)],
                "TEXT": ["a laion photo", "another laion photo", None],
                "WIDTH": [64, 64, None],
                "HEIGHT": [48, 48, None],
                "LICENSE": ["?", "cc-by", "x" * 5000],
                "NSFW": ["UNLIKELY", "UNSURE", "NSFW"],
                "image_digest": [hashlib.sha256(b"not img0").hexdigest(), "not-a-hash", None],
            }
        ),
    )
    report = crawl_shard(lake, "sources/laion/part-0.parquet", "laion", LOOPBACK_CRAWL)
    rows = _crawled(lake, "laion")
    assert [r["reason"] for r in rows] == ["", "", "no_text"]
    assert [r["source_uid"] for r in rows] == ["11", "12", None]  # 300 characters is no identifier
    assert report.extra["url_list.bad_uid"] == 1
    assert len(json.loads(rows[2]["source_fields"])["LICENSE"]) == 1000  # a carried value is cut, not dropped
    assert json.loads(rows[1]["source_fields"]) == {"HEIGHT": 48, "LICENSE": "cc-by", "NSFW": "UNSURE", "WIDTH": 64}
    assert [r["expected_sha256"] for r in rows] == [None] * 3  # "image_digest" is no default name
    assert report.extra["url_list.bad_sha256"] == 0

    mapped = CrawlConfig(allow_networks=("127.0.0.0/8",), url_list=UrlListConfig(sha256=("image_digest",)))
    report = crawl_shard(lake, "sources/laion/part-0.parquet", "laion", mapped)
    rows = _crawled(lake, "laion")
    assert rows[0]["expected_sha256"] is not None and rows[1]["expected_sha256"] is None
    assert report.extra["url_list.bad_sha256"] == 1  # "not-a-hash": counted, and that row goes unverified

    download = download_shard(lake, "laion", LOOPBACK_DOWNLOAD)  # one row claims a (wrong) hash, one claims none
    ledger = lake.read_parquet(graph.stage("download").table("laion")).to_pylist()
    assert [r["reason"] for r in ledger] == ["hash_mismatch", ""]
    assert (download.extra["sha256_claimed"], download.extra["sha256_checked"], download.extra["tar_samples"]) == (
        1,
        1,
        1,
    )
    assert conservation_problems(lake, graph.stage("download"), "laion") == []


def test_a_list_without_url_or_text_columns_is_one_clear_failure(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_parquet("sources/odd/a.parquet", pa.table({"link": ["http://example.org/a.jpg"], "alt": ["x"]}))
    report = crawl_shard(lake, "sources/odd/a.parquet", "odd", CrawlConfig())
    assert report.extra["records_failed.bad_url_list"] == 1 and report.rows_in == 0
    mapped = CrawlConfig(url_list=UrlListConfig(url=("link",), text=("alt",)))
    assert crawl_shard(lake, "sources/odd/a.parquet", "odd", mapped).rows_kept == 1
