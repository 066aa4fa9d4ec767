import threading

import pyarrow as pa
import pytest
import s3fs

from infra.lake import Lake, UnsafePathError, check_relative


@pytest.mark.parametrize(
    "bad", ["", "/etc/passwd", "../x", "a/../../b", "a//b/..", "s3://x/y", "a\\b", "a/\x00b", ".", "a/./b"]
)
def test_unsafe_paths_are_refused(bad):
    with pytest.raises(UnsafePathError):
        check_relative(bad)


def test_local_roundtrip_and_listing(tmp_path):
    lake = Lake(str(tmp_path / "root"))
    lake.write_json("a/b.json", {"x": 1})
    lake.write_parquet("t/one.parquet", pa.table({"uid": ["u1", "u2"]}))
    lake.write_bytes("a/c.bin", b"hello")
    assert lake.read_json("a/b.json") == {"x": 1}
    assert lake.read_parquet("t/one.parquet")["uid"].to_pylist() == ["u1", "u2"]
    assert lake.list("a") == ["a/b.json", "a/c.bin"]
    assert lake.list("missing") == []
    assert lake.uri("a/b.json").endswith("/root/a/b.json")


def test_failed_write_leaves_nothing_visible(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_bytes("x.bin", b"old")
    with pytest.raises(RuntimeError), lake.atomic_path("x.bin") as tmp:
        tmp.write_bytes(b"half-written")
        raise RuntimeError("crash mid-write")
    assert lake.read_bytes("x.bin") == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_readers_never_see_partial_files(tmp_path):
    lake = Lake(str(tmp_path))
    big_a, big_b = b"a" * 4_000_000, b"b" * 4_000_000
    lake.write_bytes("f", big_a)
    seen = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            data = lake.read_bytes("f")
            seen.add((len(data), len(set(data))))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(20):
        lake.write_bytes("f", big_b if i % 2 else big_a)
    stop.set()
    t.join()
    assert seen == {(4_000_000, 1)}  # every read saw a whole file made of one byte value


@pytest.mark.integration
def test_s3_roundtrip_through_real_server(s3_server):
    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    fs.mkdir("lake-test")
    lake = Lake("s3://lake-test/prefix", s3_server.storage_options())
    assert not lake.is_local
    lake.write_parquet("crawl/x.parquet", pa.table({"uid": ["a"]}))
    lake.write_json("crawl/x.report.json", {"ok": True})
    assert lake.read_parquet("crawl/x.parquet")["uid"].to_pylist() == ["a"]
    assert lake.list("crawl") == ["crawl/x.parquet", "crawl/x.report.json"]
    with pytest.raises(RuntimeError), lake.atomic_path("crawl/y.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert not lake.exists("crawl/y.bin")
    assert "secret" not in repr(lake)
