"""Reading a source file where it lies (``s3://``, ``https://``), as a seekable file, without copying it anywhere.

A Common Crawl WARC is about 1 GB on someone else's server, so a crawl shard streams it: :class:`RemoteFile` reads
it in ranges of ``chunk_bytes`` (one range request each, through fsspec: s3fs for S3, aiohttp for HTTP), holding
one range in memory, and reads the next range in a background thread while the crawl parses the current one.
Seeks are free within the held range and cost one request elsewhere (the WARC framer seeks rarely: to the end
for the size, back after a damaged gzip member).

A transfer that breaks (a reset connection, a response cut short, a 5xx, a timeout) is resumed: the range is
requested again, from its own start, never the file's, up to ``retries`` times with a doubling pause. A source
that is not there (404, no such key) or is refused (403) fails at once with :class:`RemoteSourceError` naming the
URL (without credentials): those do not get better by asking again.

Credentials never travel in the URL (:func:`infra.credentials.refuse_credentials`): S3 reads them from botocore's
own chain (``AWS_*`` variables, a profile, an instance role) unless ``anonymous`` is set.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import fsspec

from infra.credentials import redacted, refuse_credentials

REMOTE_PROTOCOLS = ("s3://", "s3a://", "http://", "https://")


@dataclass(frozen=True)
class RemoteConfig:
    """How sources by reference are read. The defaults suit Common Crawl over HTTPS or from AWS S3."""

    anonymous: bool = False  # S3 without signing (public buckets); otherwise botocore's credential chain
    endpoint_url: str = ""  # an S3-compatible endpoint (MinIO, a moto server); "" is AWS
    chunk_bytes: int = 8 << 20  # one range request; two are held in memory (the current one and the next)
    retries: int = 5  # per range, after the first try
    backoff_s: float = 0.5  # pause before the first retry; doubles each retry
    timeout_s: float = 60.0  # per request (connect and each read)


class RemoteSourceError(OSError):
    """A remote source that cannot be read: gone, refused, without a size, or still failing after every retry."""


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_PROTOCOLS)


def check_remote_url(url: str) -> str:
    """``url``, unless it is not an S3/HTTP(S) URL or carries credentials (it is stored in the shard registry)."""
    if not is_remote(url):
        raise ValueError(f"a remote source is an s3:// or http(s):// URL, not {redacted(url)!r}")
    return refuse_credentials(url, "remote source URL", "S3 credentials come from AWS_* variables or a profile")


def _filesystem(url: str, config: RemoteConfig) -> fsspec.AbstractFileSystem:
    if url.startswith(("s3://", "s3a://")):
        options: dict[str, Any] = {
            "anon": config.anonymous,
            "use_listings_cache": False,
            "config_kwargs": {
                "connect_timeout": config.timeout_s,
                "read_timeout": config.timeout_s,
                "retries": {"mode": "standard", "max_attempts": 1},  # retried here, per range, with resumption
            },
        }
        if config.endpoint_url:
            refuse_credentials(config.endpoint_url, "S3 endpoint URL", "pass credentials as AWS_* variables")
            options["client_kwargs"] = {"endpoint_url": config.endpoint_url}
        return fsspec.filesystem("s3", **options)
    return fsspec.filesystem("http", client_kwargs={"timeout": aiohttp.ClientTimeout(sock_read=config.timeout_s)})


def _permanent(err: BaseException) -> bool:
    """Errors that asking again will not fix: not found, and refused access."""
    return isinstance(err, FileNotFoundError | PermissionError) or getattr(err, "status", None) in (401, 403, 404)


class RemoteFile(io.RawIOBase):
    """A read-only, seekable view of one remote object (see the module docstring)."""

    def __init__(self, url: str, config: RemoteConfig | None = None) -> None:
        super().__init__()
        self.url = check_remote_url(url)
        self.config = config or RemoteConfig()
        self._fs = _filesystem(url, self.config)
        self.requests = 0  # range requests made, retries included
        self.retried = 0
        self.size = self._size()
        self._pos = 0
        self._start = 0
        self._data = b""
        self._ahead: tuple[int, Future[bytes]] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="remote-read")
        self._lock = threading.Lock()

    def _size(self) -> int:
        try:
            info = self._fs.info(self.url)
        except Exception as err:
            raise RemoteSourceError(self._message(err)) from err
        size = info.get("size")
        if size is None:
            raise RemoteSourceError(f"{redacted(self.url)} has no size (the server sends no Content-Length)")
        return int(size)

    def _message(self, err: BaseException) -> str:
        if isinstance(err, FileNotFoundError) or getattr(err, "status", None) == 404:
            return f"{redacted(self.url)} is not there (404 / no such key)"
        if isinstance(err, PermissionError) or getattr(err, "status", None) in (401, 403):
            return f"{redacted(self.url)} refused access ({type(err).__name__})"
        return f"{redacted(self.url)} could not be read: {type(err).__name__}: {str(err)[:300]}"

    def _fetch(self, start: int) -> bytes:
        """One range, retried from the range's own start until it arrives whole."""
        end = min(start + self.config.chunk_bytes, self.size)
        pause = self.config.backoff_s
        for attempt in range(self.config.retries + 1):
            with self._lock:
                self.requests += 1
                self.retried += attempt > 0
            try:
                data = self._fs.cat_file(self.url, start=start, end=end)
                if len(data) == end - start:
                    return data
                if len(data) > end - start:
                    raise RemoteSourceError(
                        f"{redacted(self.url)} answered a range request with {len(data)} bytes for {end - start}: "
                        "the server does not serve byte ranges"
                    )
                err: BaseException = RemoteSourceError(f"got {len(data)} of {end - start} bytes")
            except RemoteSourceError:
                raise
            except Exception as exc:
                if _permanent(exc):
                    raise RemoteSourceError(self._message(exc)) from exc
                err = exc
            if attempt == self.config.retries:
                raise RemoteSourceError(
                    f"bytes {start}-{end} of {redacted(self.url)} failed {attempt + 1} times; last: "
                    f"{type(err).__name__}: {str(err)[:300]}"
                ) from err
            time.sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")

    def _load(self, start: int) -> None:
        ahead = self._ahead
        self._ahead = None
        if ahead is not None and ahead[0] == start:
            self._data = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            self._data = self._fetch(start)
        self._start = start
        following = start + len(self._data)
        if following < self.size:
            self._ahead = (following, self._pool.submit(self._fetch, following))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.size - self._pos
        parts = []
        while size > 0 and self._pos < self.size:
            if not self._start <= self._pos < self._start + len(self._data):
                self._load(self._pos)
            offset = self._pos - self._start
            piece = self._data[offset : offset + size]
            parts.append(piece)
            self._pos += len(piece)
            size -= len(piece)
        return b"".join(parts)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None
        self._pool.shutdown(wait=False, cancel_futures=True)  # a read ahead still retrying must not hold the shard
        self._data = b""
        super().close()
