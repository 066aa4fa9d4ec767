"""The downloader's guards: img2dataset may only connect to addresses the policy allows, no request may hold a
thread or memory without bound, an opted-out image is never fetched whole, and no decompression bomb is decoded.

img2dataset fetches with ``urllib.request.urlopen``, and it follows redirects and resolves host names without
any address check. The guard closes that gap where the connection is made: a urllib opener whose HTTP(S)
connections resolve the host, refuse it when no resolved address is allowed, and connect to the address that was
checked (so a second DNS answer cannot swap in a private one). Redirects go through the same opener, so a redirect
to a private address is refused too; the opener has no FTP, file or data handler and ignores proxy variables.

img2dataset's ``timeout`` bounds each socket read, not a request: a server that trickles a byte every half second
holds a thread for ever, and one that sends gigabytes fills memory. Every response of the guarded opener reads
through :class:`_GuardedReader`, which gives up at the request's overall deadline (connection, redirects, headers
and body together: :attr:`Limits.deadline`) and once the body passes :attr:`Limits.max_body_bytes`; a body declared
too big is refused from its headers. The same headers are checked against the opt-out rule of :mod:`ops.optout`
(the crawl's rule, so ``otherbot: noai`` and ``none`` mean at download what they mean at crawl), which replaces
img2dataset's own check.

img2dataset decodes with OpenCV, which allocates the full pixel array of whatever size a header claims; a tiny PNG
can claim 40,000 × 40,000 pixels. :class:`ops.pixel_limit.PixelLimit` wraps its resizer and refuses, unread, images
whose header claims more than the configured pixel count or whose size cannot be read at all. Behind it, OpenCV's
own limit (``OPENCV_IO_MAX_IMAGE_PIXELS``, read once when OpenCV loads) refuses what a header reader might have
misread; :func:`ops.decoder_limit.check_decoder_limit` proves it is in force before a shard downloads.

:func:`guarded_img2dataset` makes ``img2dataset.download`` build a :class:`GuardedDownloader`, which installs
the opener in the process that runs it before it downloads, and run its shards in this process rather than in a
spawned worker (:func:`in_process_distributor`); the instances carry their settings, so they would still guard a
worker if a distributor pickled them.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import io
import ipaddress
import multiprocessing
import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from img2dataset.distributor import retrier
from img2dataset.downloader import Downloader

from ops.netpolicy import AddressPolicy
from ops.optout import OPT_OUT_DIRECTIVES, opts_out
from ops.pixel_limit import PixelLimit

BLOCKED = "blocked non-public address"
# ``img2dataset.main`` the attribute is a function (the package re-exports it); the module is what builds Downloaders.
_IMG2DATASET_MAIN = importlib.import_module("img2dataset.main")


class BlockedAddressError(OSError):
    """The host resolves only to addresses the policy refuses."""


DEADLINE = "download deadline exceeded"
TOO_LARGE = "response body too large"
OPTED_OUT = "refused by X-Robots-Tag"


class DeadlineExceeded(OSError):
    """The request (connection, redirects, headers and body) ran past its overall deadline."""


class BodyTooLarge(OSError):
    """The response declared, or sent, more body than the limit."""


class OptedOut(OSError):
    """The image's response carries an opt-out directive (the shared rule of :mod:`ops.optout`)."""


@dataclass(frozen=True)
class Limits:
    """What one request may cost: ``deadline`` seconds for everything (img2dataset's ``timeout`` only bounds each
    read, so a server trickling a byte every half second would hold a thread for ever), ``max_body_bytes`` of body,
    and the opt-out directives that refuse the image."""

    deadline: float = 60.0
    max_body_bytes: int = 32 << 20
    refused: tuple[str, ...] = OPT_OUT_DIRECTIVES


_request = threading.local()  # the deadline of the request this thread is making (redirects share it)


class DownloadCancelled(OSError):
    """The download was cancelled: no new request starts, and the ones in flight are cut."""


class _InFlight:
    """The sockets of the requests in flight. A cancelled download shuts them down at once: img2dataset's thread
    pool waits for every fetch it started before it lets the interrupt through, and a slow server would otherwise
    hold a cancelled run for as long as its slowest answer (the request deadline, a minute by default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cancelled = False

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            if self._cancelled:
                sock.close()
                raise DownloadCancelled("the download was cancelled")
            self._open.add(sock)

    def closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def reset(self) -> None:
        with self._lock:
            self._cancelled = False
            self._open.clear()


_IN_FLIGHT = _InFlight()


class _GuardedReader(io.RawIOBase):
    """A socket reader that gives up at the request's deadline and once the body passes its limit."""

    def __init__(self, raw: Any, sock: socket.socket, deadline: float, limits: Limits) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._per_read = sock.gettimeout()
        self._deadline = deadline
        self._limits = limits
        self._received = 0
        self._body_from: int | None = None

    def readable(self) -> bool:
        return True

    def start_body(self) -> None:
        """Count what arrives from now on as body (what the buffer read ahead with the headers, at most one
        buffer's worth, goes uncounted)."""
        self._body_from = self._received

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"{DEADLINE}: {self._limits.deadline:g} s")
        self._sock.settimeout(left if self._per_read is None else min(self._per_read, left))
        try:
            n = self._raw.readinto(buffer)
        except TimeoutError:
            if time.monotonic() >= self._deadline:
                raise DeadlineExceeded(f"{DEADLINE}: {self._limits.deadline:g} s") from None
            raise
        self._received += n or 0
        if self._body_from is not None and self._received - self._body_from > self._limits.max_body_bytes:
            raise BodyTooLarge(f"{TOO_LARGE}: more than {self._limits.max_body_bytes} bytes")
        return n

    def close(self) -> None:
        _IN_FLIGHT.closed(self._sock)
        self._raw.close()  # releases the socket, which urllib has already closed on its side
        super().close()


def _response_class(limits: Limits) -> type[http.client.HTTPResponse]:
    class Response(http.client.HTTPResponse):
        """Reads through :class:`_GuardedReader`; refuses opt-outs and declared oversized bodies from the headers."""

        def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
            super().__init__(sock, *args, **kwargs)
            self.fp.close()  # http.client's own buffered reader: replaced by one that holds the socket as long
            deadline = getattr(_request, "deadline", time.monotonic() + limits.deadline)
            self.fp = io.BufferedReader(_GuardedReader(sock.makefile("rb", buffering=0), sock, deadline, limits))

        def begin(self) -> None:
            super().begin()
            if 200 <= self.status < 300:
                robots = self.headers.get_all("X-Robots-Tag") or []
                if opts_out(robots, limits.refused):
                    raise OptedOut(f"{OPTED_OUT}: {'; '.join(robots)[:200]}")
                if self.length is not None and self.length > limits.max_body_bytes:
                    raise BodyTooLarge(f"{TOO_LARGE}: {self.length} bytes declared")
            self.fp.raw.start_body()

    return Response


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


def _seconds(timeout: Any) -> float | None:
    """A connection's per-read timeout in seconds (None: none, which is also what the global default means here)."""
    return None if timeout is socket._GLOBAL_DEFAULT_TIMEOUT else timeout


def _connect_timeout(timeout: Any) -> float | None:
    """The per-read timeout, shortened to what is left of the request's deadline."""
    per_read = _seconds(timeout)
    deadline = getattr(_request, "deadline", None)
    if deadline is None:
        return per_read
    left = max(deadline - time.monotonic(), 0.001)
    return left if per_read is None else min(per_read, left)


class _Opener(urllib.request.OpenerDirector):
    """Starts each request's deadline; a redirect, opened from inside, keeps the one already running."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self._limits = limits

    def open(self, fullurl: Any, data: Any = None, timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT) -> Any:
        depth = getattr(_request, "depth", 0)
        if depth == 0:
            _request.deadline = time.monotonic() + self._limits.deadline
        _request.depth = depth + 1
        try:
            return super().open(fullurl, data, timeout)
        finally:
            _request.depth = depth


def build_opener(policy: AddressPolicy, limits: Limits | None = None) -> urllib.request.OpenerDirector:
    """An opener with only HTTP(S), redirects and error handling, every connection checked against ``policy`` and
    every request held to ``limits``."""
    limits = limits or Limits()
    response_class = _response_class(limits)

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            ip = checked_address(self.host, self.port, policy)
            self.sock = socket.create_connection((ip, self.port), _connect_timeout(self.timeout), self.source_address)
            _IN_FLIGHT.opened(self.sock)
            self.sock.settimeout(_seconds(self.timeout))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            ip = checked_address(self.host, self.port, policy)
            sock = socket.create_connection((ip, self.port), _connect_timeout(self.timeout), self.source_address)
            _IN_FLIGHT.opened(sock)
            sock.settimeout(_seconds(self.timeout))
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

    Connection.response_class = response_class
    SecureConnection.response_class = response_class

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(SecureConnection, req)

    opener = _Opener(limits)
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


def install(allow_networks: tuple[str, ...], limits: Limits | None = None) -> None:
    """Make ``urllib.request.urlopen`` in this process go through the guard."""
    urllib.request.install_opener(build_opener(AddressPolicy(allow_networks), limits))


class GuardedDownloader(Downloader):
    """img2dataset's downloader with the guards installed in the process that runs it before it fetches anything."""

    allow_networks: tuple[str, ...] = ()
    max_pixels: int = 89_478_485
    limits: Limits = Limits()

    def __call__(self, row: Any) -> Any:
        install(self.allow_networks, self.limits)
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


def _end_processes(children: set[multiprocessing.Process], grace: float = 5.0) -> None:
    for child in children:
        child.terminate()
    for child in children:
        child.join(grace)
        if child.is_alive():
            child.kill()
            child.join(grace)


@contextlib.contextmanager
def _cut_requests_on_interrupt() -> Iterator[None]:
    """While active, an interrupt (SIGINT, or SIGTERM: a cancelled run) first cuts the requests in flight, then goes
    to whatever handled it before. Signal handlers belong to the main thread; elsewhere the interrupt is left as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> Any:
        _IN_FLIGHT.cancel()
        before = previous[signum]
        if callable(before):
            return before(signum, frame)
        if before == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        return None

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


@contextlib.contextmanager
def guarded_img2dataset(allow_networks: tuple[str, ...], max_pixels: int, limits: Limits) -> Iterator[None]:
    """While active, ``img2dataset.download`` runs its shards in this process (:func:`in_process_distributor`)
    through :class:`GuardedDownloader`. The guarded opener it installs for ``urllib.request.urlopen``, which is
    process-wide, is taken out again afterwards; downloads in one process take turns.

    When the download is interrupted (a cancelled run), the requests in flight are cut at once (:class:`_InFlight`),
    and the processes img2dataset started are ended too: its logger process polls until every shard has reported,
    so left alive it would hold the step's process at exit for ever.
    """

    def make(*args: Any, **kwargs: Any) -> GuardedDownloader:
        downloader = GuardedDownloader(*args, **kwargs)
        downloader.allow_networks = tuple(allow_networks)
        downloader.max_pixels = max_pixels
        downloader.limits = limits
        return downloader

    with _PATCH_LOCK:
        original = _IMG2DATASET_MAIN.Downloader, _IMG2DATASET_MAIN.multiprocessing_distributor
        opener = urllib.request._opener  # urlopen's process-wide opener (None until one is installed or used)
        _IMG2DATASET_MAIN.Downloader, _IMG2DATASET_MAIN.multiprocessing_distributor = make, in_process_distributor
        before = set(multiprocessing.active_children())
        _IN_FLIGHT.reset()
        try:
            with _cut_requests_on_interrupt():
                yield
        except BaseException:
            _IN_FLIGHT.cancel()
            _end_processes(set(multiprocessing.active_children()) - before)
            raise
        finally:
            _IMG2DATASET_MAIN.Downloader, _IMG2DATASET_MAIN.multiprocessing_distributor = original
            urllib.request._opener = opener
