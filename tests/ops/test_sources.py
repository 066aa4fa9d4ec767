"""Shard keys from source paths, and the registry that binds a key to its file for ever."""

import gzip
import unicodedata
from pathlib import Path

import pytest

from infra.lake import Lake
from ops.sources import (
    REGISTRY,
    SourceError,
    check_shard_key,
    list_sources,
    register,
    registry,
    shard_key,
    source_for,
    sync,
)


def test_shard_keys_from_paths():
    assert shard_key("sources/cc/CC-MAIN-1.warc.gz") == "cc.CC-MAIN-1"
    assert shard_key("sources/a/b.warc.wat.gz") == "a.b"
    assert shard_key("sources/urls/laion part 1.parquet") == "urls.laion_part_1"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "a..b", "x" * 300])
def test_bad_keys_refused(bad):
    with pytest.raises(SourceError):
        check_shard_key(bad)


def test_listing_refuses_every_file_of_a_clash(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_bytes("sources/web/one.warc.gz", b"x")
    lake.write_bytes("sources/web/two.wat.gz", b"x")
    lake.write_bytes("sources/web/notes.txt", b"x")
    lake.write_bytes("sources/web.one.warc", b"x")  # the same key as web/one
    lake.write_bytes("sources/web/TWO.warc", b"x")  # the same key as web/two, case-folded
    found, skipped = list_sources(lake)
    assert found == {}  # which file a key means must not depend on listing order
    assert len(skipped) == 2
    assert "'sources/web.one.warc', 'sources/web/one.warc.gz'] all map to shard 'web.one'" in skipped[0]
    assert "all map to shard 'web.two'" in skipped[1]


def test_first_registration_binds_and_sync_lists_new_keys(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_bytes("sources/cc/b.warc.gz", b"x")
    lake.write_bytes("sources/cc/a.wat.gz", b"x")
    assert registry(lake) == {}
    new, refused = sync(lake, known=set())
    assert (new, refused) == (["cc.a", "cc.b"], [])
    assert {k: v["path"] for k, v in registry(lake).items()} == {
        "cc.a": "sources/cc/a.wat.gz",
        "cc.b": "sources/cc/b.warc.gz",
    }
    assert source_for(lake, "cc.a") == "sources/cc/a.wat.gz"
    stamp = lake.read_bytes(REGISTRY)
    assert sync(lake, known={"cc.a", "cc.b"}) == ([], [])
    assert lake.read_bytes(REGISTRY) == stamp  # nothing new: the registry is not rewritten
    lake.write_bytes("sources/cc/c.warc", b"x")
    assert sync(lake, known={"cc.a", "cc.b"}) == (["cc.c"], [])
    assert list(registry(lake)) == ["cc.a", "cc.b", "cc.c"]  # the order shards arrived in


@pytest.mark.parametrize(
    ("first", "later"),
    [
        ("sources/web/one.warc", "sources/Web/One.warc"),  # case
        ("sources/urls/laion_part_1.parquet", "sources/urls/laion part 1.parquet"),  # a space for an underscore
        ("sources/urls/a_b.parquet", "sources/urls/a  b.parquet"),  # two spaces fold to one underscore
    ],
)
def test_a_later_file_that_folds_to_a_registered_key_is_refused(tmp_path, first, later):
    lake = Lake(str(tmp_path))
    lake.write_bytes(first, b"first")
    [key], _ = sync(lake, known=set())
    lake.delete(first)
    lake.write_bytes(later, b"later")
    new, refused = sync(lake, known={key})
    assert new == []
    assert len(refused) == 1 and repr(later) in refused[0] and f"registered for {first!r}" in refused[0]
    assert registry(lake)[key]["path"] == first  # a registered key never re-points
    with pytest.raises(SourceError, match="is gone"):
        source_for(lake, key)
    registration = register(lake, {shard_key(later): later})
    assert registration.new == {} and len(registration.refused) == 1


def test_accented_names_are_refused_with_a_message(tmp_path):
    """The lake reads only safe path characters, so a file with an accent (in either Unicode form) can never be
    crawled: it is reported by name, and the files beside it are still registered."""
    lake = Lake(str(tmp_path))
    folder = Path(lake.path("sources"))
    folder.mkdir()
    for form in ("NFC", "NFD"):
        (folder / unicodedata.normalize(form, f"caf\u00e9-{form}.warc")).write_bytes(b"x")
    lake.write_bytes("sources/cafe.warc", b"x")
    new, refused = sync(lake, known=set())
    assert new == ["cafe"]
    assert len(refused) == 2 and all("caf" in message and "shard" in message for message in refused)
    assert list(registry(lake)) == ["cafe"]


def test_sync_adds_a_deleted_partition_again_while_its_file_exists(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_bytes("sources/a.warc", b"x")
    lake.write_bytes("sources/b.warc", b"x")
    assert sync(lake, known=set())[0] == ["a", "b"]
    assert sync(lake, known={"b"})[0] == ["a"]  # partition "a" was deleted by hand: offered again
    lake.delete("sources/a.warc")
    assert sync(lake, known={"b"})[0] == []  # not once its file is gone
    assert list(registry(lake)) == ["a", "b"]


def test_source_for_errors(tmp_path):
    lake = Lake(str(tmp_path))
    with pytest.raises(SourceError, match="no source file"):
        source_for(lake, "web.three")
    with pytest.raises(SourceError, match="invalid shard key"):
        source_for(lake, "../etc")
    lake.write_bytes("sources/web/three.warc", b"x")
    # a partition added by hand before the sensor saw its file: bound to that file on first use
    assert source_for(lake, "web.three") == "sources/web/three.warc"
    assert registry(lake)["web.three"]["path"] == "sources/web/three.warc"
    lake.delete("sources/web/three.warc")
    with pytest.raises(SourceError, match="is gone"):
        source_for(lake, "web.three")


def _manifest(lake: Lake, rel: str, lines: list[str]) -> None:
    lake.write_bytes(rel, gzip.compress("".join(f"{line}\n" for line in lines).encode()))


def test_manifest_lines_become_shards_bound_to_their_urls(tmp_path):
    lake = Lake(str(tmp_path))
    cc = "crawl-data/CC-MAIN-2024-10/segments/1707947473347.0"
    _manifest(lake, "sources/cc/warc.paths.gz", [f"{cc}/warc/CC-MAIN-1-00000.warc.gz", ""])
    lake.write_bytes("sources/cc/wat.paths", f"{cc}/wat/CC-MAIN-1-00000.warc.wat.gz\r\n".encode())
    lake.write_bytes("sources/mirror/base_url", b"s3://my-bucket/cc\n")
    lake.write_bytes("sources/mirror/urls.paths", b"laion/part-00000.parquet\nhttps://example.org/x/y.warc\n")
    assert sync(lake, known=set()) == (
        ["cc.warc.CC-MAIN-1-00000", "cc.wat.CC-MAIN-1-00000", "mirror.urls.part-00000", "mirror.urls.y"],
        [],
    )
    assert (
        source_for(lake, "cc.warc.CC-MAIN-1-00000") == f"https://data.commoncrawl.org/{cc}/warc/CC-MAIN-1-00000.warc.gz"
    )
    assert (
        source_for(lake, "cc.wat.CC-MAIN-1-00000")
        == f"https://data.commoncrawl.org/{cc}/wat/CC-MAIN-1-00000.warc.wat.gz"
    )
    assert source_for(lake, "mirror.urls.part-00000") == "s3://my-bucket/cc/laion/part-00000.parquet"
    assert source_for(lake, "mirror.urls.y") == "https://example.org/x/y.warc"

    lake.write_bytes("sources/cc/wat.paths", b"")  # a line removed: its shard stays, bound as it was
    assert sync(lake, known=set())[0] == sorted(registry(lake))
    assert source_for(lake, "cc.wat.CC-MAIN-1-00000").endswith("CC-MAIN-1-00000.warc.wat.gz")


def test_lines_that_cannot_be_shards_are_reported_by_kind_and_the_rest_registered(tmp_path):
    lake = Lake(str(tmp_path))
    lines = [
        "a/ok-1.warc.gz",
        "a/ok-1.warc.gz",  # listed twice: one shard, not a clash
        "user:s3cr3t@mirror.example/a.warc.gz",
        "a/../escape.warc.gz",
        "a/b c.warc.gz",
        "a/x.warc.gz?X-Amz-Signature=s3cr3t",
        "https://user:s3cr3t@example.org/a.warc.gz",
        "a/notes.warc.wet.gz",
        "a/other.wet.gz",
        "x" * 3000,
    ]
    _manifest(lake, "sources/cc/warc.paths.gz", lines)
    lake.write_bytes("sources/cc/broken.paths.gz", b"\x1f\x8b\x08junk")
    lake.write_bytes("sources/bad/base_url", b"https://k:s3cr3t@mirror.example/\n")
    _manifest(lake, "sources/bad/warc.paths.gz", ["a/ok-2.warc.gz"])
    new, refused = sync(lake, known=set())
    assert new == ["cc.warc.ok-1"]
    text = "\n".join(refused)
    assert "s3cr3t" not in text
    assert "manifest 'sources/bad/warc.paths.gz' cannot be read" in text and "carries credentials" in text
    assert "manifest 'sources/cc/broken.paths.gz' cannot be read" in text
    assert "4 line(s) of manifest 'sources/cc/warc.paths.gz' cannot be shards (not a relative path" in text
    assert "e.g. 'user…'" in text
    assert "2 line(s) of manifest 'sources/cc/warc.paths.gz' cannot be shards (not a .warc.wat.gz" in text
    assert "(the line is too long)" in text and "carries credentials" in text


def test_a_line_and_a_file_with_one_key_are_both_refused_and_a_later_line_cannot_take_a_key(tmp_path):
    lake = Lake(str(tmp_path))
    _manifest(lake, "sources/cc/warc.paths.gz", ["a/one.warc.gz", "b/two.warc.gz"])
    lake.write_bytes("sources/cc/warc/one.warc.gz", b"x")
    new, refused = sync(lake, known=set())
    assert new == ["cc.warc.two"]
    assert len(refused) == 1 and "all map to shard 'cc.warc.one'" in refused[0]
    _manifest(lake, "sources/cc/warc.paths.gz", ["a/one.warc.gz", "b/two.warc.gz", "c/TWO.warc.gz"])
    lake.delete("sources/cc/warc/one.warc.gz")
    new, refused = sync(lake, known={"cc.warc.two"})
    assert new == ["cc.warc.one"]
    assert len(refused) == 1 and "all map to shard 'cc.warc.two'" in refused[0]  # the rule for files, too
    assert source_for(lake, "cc.warc.two") == "https://data.commoncrawl.org/b/two.warc.gz"  # still bound to it


def test_a_long_manifest_registers_every_line_and_appended_lines_join(tmp_path):
    """Common Crawl lists 80,000-100,000 WARC files a crawl; the bench registers 100,000 (docs/benchmarks.md)."""
    lake = Lake(str(tmp_path))
    lines = [f"crawl-data/C/segments/{i // 500}/warc/C-{i:05d}.warc.gz" for i in range(20_000)]
    _manifest(lake, "sources/cc/warc.paths.gz", lines)
    new, refused = sync(lake, known=set())
    assert (len(new), refused) == (20_000, [])
    _manifest(lake, "sources/cc/warc.paths.gz", [*lines, "crawl-data/C/segments/x/warc/C-20000.warc.gz"])
    assert sync(lake, known=set(new)) == (["cc.warc.C-20000"], [])
    assert list(registry(lake))[-1] == "cc.warc.C-20000"  # the order lines arrived in
