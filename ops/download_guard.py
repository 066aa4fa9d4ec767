"""The downloader's guards: img2dataset may only connect to addresses the policy allows, and never decodes a
decompression bomb.

img2dataset fetches with ``urllib.request.urlopen``, and it follows redirects and resolves host names without
any address check. The guard closes that gap where the connection is made: a urllib opener whose HTTP(S)
connections resolve the host, refuse it when no resolved address is allowed, and connect to the address that was
checked (so a second DNS answer cannot swap in a private one). Redirects go through the same opener, so a redirect
to a private address is refused too; the opener has no FTP, file or data handler and ignores proxy variables.

img2dataset decodes with OpenCV, which allocates the full pixel array of whatever size a header claims; a
tiny PNG can claim 40,000 × 40,000 pixels. :class:`PixelLimit` reads only the header and refuses images above the
configured pixel count before OpenCV sees them. It parses JPEG, PNG, GIF, WebP and BMP headers itself
(:func:`ops.image_size.header_size`, a few times cheaper than Pillow in the GIL-bound downloader process) and asks
Pillow's lazy open about anything else.

:func:`guarded_img2dataset` makes ``img2dataset.download`` build a :class:`GuardedDownloader`, which installs
the opener in the process that runs it before it downloads, and run its shards in this process rather than in a
spawned worker (:func:`in_process_distributor`); the instances carry the allowed networks, so they would still
guard a worker if a distributor pickled them.
"""

from __future__ import annotations

import http.client
import importlib
import io
import ipaddress
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from img2dataset.distributor import retrier
from img2dataset.downloader import Downloader
from PIL import Image

from ops.image_size import header_size
from ops.netpolicy import AddressPolicy

BLOCKED = "blocked non-public address"
# ``img2dataset.main`` the attribute is a function (the package re-exports it); the module is what builds Downloaders.
_IMG2DATASET_MAIN = importlib.import_module("img2dataset.main")


class BlockedAddressError(OSError):
    """The host resolves only to addresses the policy refuses."""


def checked_address(host: str, port: int, policy: AddressPolicy) -> str:
    """The first resolved address of ``host`` that the policy allows; raises when there is none."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if not policy.is_blocked(ip):
            return sockaddr[0]
        seen.append(str(ip))
    raise BlockedAddressError(f"{BLOCKED}: {host} resolves to {', '.join(sorted(set(seen))) or 'nothing'}")


def build_opener(policy: AddressPolicy) -> urllib.request.OpenerDirector:
    """An opener with only HTTP(S), redirects and error handling, every connection checked against ``policy``."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            ip = checked_address(self.host, self.port, policy)
            self.sock = socket.create_connection((ip, self.port), self.timeout, self.source_address)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            ip = checked_address(self.host, self.port, policy)
            sock = socket.create_connection((ip, self.port), self.timeout, self.source_address)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(SecureConnection, req)

    opener = urllib.request.OpenerDirector()
    for handler in (
        Handler(),
        SecureHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ):
        opener.add_handler(handler)
    return opener


def install(allow_networks: tuple[str, ...]) -> None:
    """Make ``urllib.request.urlopen`` in this process go through the guard."""
    urllib.request.install_opener(build_opener(AddressPolicy(allow_networks)))


TOO_MANY_PIXELS = "decompression bomb"


class PixelLimit:
    """Wraps img2dataset's resizer: images whose header claims more than ``max_pixels`` are refused unread."""

    def __init__(self, resizer: Any, max_pixels: int) -> None:
        self.resizer = resizer
        self.max_pixels = max_pixels

    def __call__(self, img_stream: Any, blurring_bbox_list: Any = None) -> Any:
        # img2dataset hands over a BytesIO made from the response's bytes: getvalue() returns them without a copy.
        if isinstance(img_stream, io.BytesIO):
            data = img_stream.getvalue()
        else:
            data = img_stream.read()
            img_stream.seek(0)
        size = header_size(data)
        if size is not None:
            width, height = size
        else:
            try:
                with Image.open(img_stream) as img:
                    width, height = img.size
            except Image.DecompressionBombError as exc:  # Pillow refuses the claimed size itself (TIFF, ICO, ...)
                img_stream.seek(0)
                return None, None, None, None, None, f"{TOO_MANY_PIXELS}: {exc}"
            except Exception:  # not something Pillow knows: let img2dataset's own decoder judge it
                width = height = 0
        img_stream.seek(0)
        if width * height > self.max_pixels:
            return None, None, None, width, height, f"{TOO_MANY_PIXELS}: {width}x{height} > {self.max_pixels} pixels"
        return self.resizer(img_stream, blurring_bbox_list)


class GuardedDownloader(Downloader):
    """img2dataset's downloader with both guards installed in the process that runs it before it fetches anything."""

    allow_networks: tuple[str, ...] = ()
    max_pixels: int = 89_478_485

    def __call__(self, row: Any) -> Any:
        install(self.allow_networks)
        if not isinstance(self.resizer, PixelLimit):
            self.resizer = PixelLimit(self.resizer, self.max_pixels)
        return super().__call__(row)


def in_process_distributor(
    _processes_count: int, downloader: Any, reader: Any, _subjob_size: int, max_shard_retry: int
) -> None:
    """img2dataset's distributor contract, run in this process: every shard of ``reader`` through ``downloader``,
    whose own thread pool does the fetching, and failed shards retried as its multiprocessing distributor does.

    That distributor spawns a fresh interpreter even for one process, which imports img2dataset again (torch,
    webdataset, albumentations: about 3 s of CPU) beside a download of a few tens of seconds. A download step is
    already a process of its own (Dagster's multiprocess executor, or a pod), so the shard runs here instead.
    """

    def run(rows: Any) -> list[Any]:
        return [row for ok, row in map(downloader, rows) if ok is False]

    retrier(run, run(reader), max_shard_retry)


_PATCH_LOCK = threading.Lock()


@contextmanager
def guarded_img2dataset(allow_networks: tuple[str, ...], max_pixels: int) -> Iterator[None]:
    """While active, ``img2dataset.download`` runs its shards in this process (:func:`in_process_distributor`)
    through :class:`GuardedDownloader`. The guarded opener it installs for ``urllib.request.urlopen``, which is
    process-wide, is taken out again afterwards; downloads in one process take turns."""

    def make(*args: Any, **kwargs: Any) -> GuardedDownloader:
        downloader = GuardedDownloader(*args, **kwargs)
        downloader.allow_networks = tuple(allow_networks)
        downloader.max_pixels = max_pixels
        return downloader

    with _PATCH_LOCK:
        original = _IMG2DATASET_MAIN.Downloader, _IMG2DATASET_MAIN.multiprocessing_distributor
        opener = urllib.request._opener  # urlopen's process-wide opener (None until one is installed or used)
        _IMG2DATASET_MAIN.Downloader, _IMG2DATASET_MAIN.multiprocessing_distributor = make, in_process_distributor
        try:
            yield
        finally:
            _IMG2DATASET_MAIN.Downloader, _IMG2DATASET_MAIN.multiprocessing_distributor = original
            urllib.request._opener = opener
