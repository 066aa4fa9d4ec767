import pytest

from infra.lake import Lake
from ops.sources import SourceError, check_shard_key, list_sources, shard_key, source_for


def test_shard_keys_from_paths():
    assert shard_key("sources/cc/CC-MAIN-1.warc.gz") == "cc.CC-MAIN-1"
    assert shard_key("sources/a/b.warc.wat.gz") == "a.b"
    assert shard_key("sources/urls/laion part 1.parquet") == "urls.laion_part_1"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "a..b", "x" * 300])
def test_bad_keys_refused(bad):
    with pytest.raises(SourceError):
        check_shard_key(bad)


def test_listing_and_lookup(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_bytes("sources/web/one.warc.gz", b"x")
    lake.write_bytes("sources/web/two.wat.gz", b"x")
    lake.write_bytes("sources/web/notes.txt", b"x")
    lake.write_bytes("sources/web.one.warc", b"x")  # collides with web/one
    found, skipped = list_sources(lake)
    assert found == {"web.one": "sources/web.one.warc", "web.two": "sources/web/two.wat.gz"} or found == {
        "web.one": "sources/web/one.warc.gz",
        "web.two": "sources/web/two.wat.gz",
    }
    assert len(skipped) == 1 and "both map to shard" in skipped[0]
    assert source_for(lake, "web.two") == "sources/web/two.wat.gz"
    with pytest.raises(SourceError, match="no source file"):
        source_for(lake, "web.three")
