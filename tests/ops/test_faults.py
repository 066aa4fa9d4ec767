"""SIGKILL in the middle of a shard: nothing partial is ever visible, and a re-run gives the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from infra.lake import Lake
from ops.crawl import CrawlConfig, crawl_shard
from tests.conftest import FIXTURES, REPO

WARCS = ["resiliparse-commoncrawl.warc.gz", "sample-0000.warc.gz", "sample-0001.warc.gz"]

CRAWL = """
import sys
from infra.lake import Lake
from ops.crawl import CrawlConfig, crawl_shard
crawl_shard(Lake(sys.argv[1]), "sources/big.warc.gz", "big", CrawlConfig())
"""


def _big_source(lake: Lake, copies: int) -> None:
    blob = b"".join((FIXTURES / "warc" / name).read_bytes() for name in WARCS)
    lake.write_bytes("sources/big.warc.gz", blob * copies)


def _kill_midway(code: str, root: Path, marker: Path | None, delay: float) -> None:
    """Start ``code`` in a child process and SIGKILL it once it is busy (``delay`` s, or when ``marker`` exists)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if marker is None or marker.exists():
            break
        time.sleep(0.05)
    time.sleep(delay)
    assert proc.poll() is None, "the child finished before it could be killed; make the input bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_killed_crawl_leaves_nothing_visible_and_rerun_matches(tmp_path):
    reference = Lake(str(tmp_path / "reference"))
    _big_source(reference, 100)
    expected = crawl_shard(reference, "sources/big.warc.gz", "big", CrawlConfig())

    lake = Lake(str(tmp_path / "killed"))
    _big_source(lake, 100)
    _kill_midway(CRAWL, tmp_path / "killed", None, delay=2.5)
    assert lake.list("crawl") == []  # not even a partial parquet

    again = crawl_shard(lake, "sources/big.warc.gz", "big", CrawlConfig())
    assert again.to_dict() | {"seconds": 0} == expected.to_dict() | {"seconds": 0}
    assert lake.read_parquet("crawl/big.parquet").equals(reference.read_parquet("crawl/big.parquet"))
    assert lake.list("crawl") == ["crawl/big.parquet", "crawl/big.report.json"]


def test_killed_rewrite_keeps_the_previous_version_whole(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    _big_source(lake, 100)
    crawl_shard(lake, "sources/big.warc.gz", "big", CrawlConfig())
    before = lake.read_bytes("crawl/big.parquet")
    _kill_midway(CRAWL, tmp_path / "lake", None, delay=2.5)
    assert lake.read_bytes("crawl/big.parquet") == before
