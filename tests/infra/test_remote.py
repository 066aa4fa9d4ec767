"""Remote sources read in ranges from a real HTTP server on 127.0.0.1: whole, resumed after a cut, and refused
clearly when they are gone or carry credentials."""

from __future__ import annotations

import io

import pytest

from infra.remote import RemoteConfig, RemoteFile, RemoteSourceError, check_remote_url
from infra.sample_web.mirror import MirrorServer
from infra.sample_web.server import SampleWebServer
from tests.conftest import FIXTURES

WARC = FIXTURES / "warc" / "sample-0000.warc.gz"
FAST = RemoteConfig(chunk_bytes=1 << 16, retries=2, backoff_s=0.01, timeout_s=10)


@pytest.fixture
def mirror():
    with MirrorServer(WARC.parent) as server:
        yield server


def test_reads_the_file_whole_and_seeks(mirror):
    data = WARC.read_bytes()
    with RemoteFile(f"{mirror.url}/{WARC.name}", FAST) as f:
        assert f.size == len(data) == f.seek(0, io.SEEK_END)
        f.seek(100_000)
        assert f.read(10) == data[100_000:100_010]
        f.seek(0)
        assert f.read() == data
        assert f.read(5) == b""


def test_a_cut_transfer_resumes_at_its_own_range(mirror):
    """The response that crosses byte 150,000 ends there; the retry asks for that range again, not the file."""
    data = WARC.read_bytes()
    mirror.cut(f"/{WARC.name}", 150_000)
    with RemoteFile(f"{mirror.url}/{WARC.name}", FAST) as f:
        assert f.read() == data
        assert f.retried == 1
    starts = mirror.gets(f"/{WARC.name}")
    assert starts == [0, 65536, 131072, 131072, 196608]  # the range holding the cut, twice; no restart at 0


def test_a_missing_file_fails_at_once_naming_it(mirror):
    with pytest.raises(RemoteSourceError, match=r"/gone\.warc\.gz is not there \(404"):
        RemoteFile(f"{mirror.url}/gone.warc.gz", FAST)
    assert mirror.gets("/gone.warc.gz") == []


def test_transfers_that_keep_failing_give_up_with_the_range(mirror):
    """A transfer cut every time: the retries are spent and the error says which bytes of which URL."""
    mirror.cut(f"/{WARC.name}", 150_000, times=FAST.retries + 1)
    with RemoteFile(f"{mirror.url}/{WARC.name}", FAST) as f:
        f.seek(140_000)
        with pytest.raises(RemoteSourceError, match=r"bytes 140000-205536 of http://127\.0\.0\.1:\d+/sample.* 3 times"):
            f.read(10)


@pytest.mark.parametrize(
    "url",
    ["https://user:secret@example.org/a.warc.gz", "https://example.org/a.warc.gz?X-Amz-Signature=abc", "/etc/passwd"],
)
def test_urls_with_credentials_or_no_scheme_are_refused(url):
    with pytest.raises(ValueError) as err:
        check_remote_url(url)
    assert "secret" not in str(err.value) and "abc" not in str(err.value)


def test_a_server_without_range_requests_is_named_not_retried(tmp_path):
    """The sample web answers every GET with the whole file: a range reader must say so, not loop on it."""
    (tmp_path / "a.warc.gz").write_bytes(WARC.read_bytes())
    with SampleWebServer(tmp_path) as server, RemoteFile(f"{server.url}/a.warc.gz", FAST) as f:
        with pytest.raises(RemoteSourceError, match="does not serve byte ranges"):
            f.read(10)
        assert f.requests == 1
