"""A local HTTP mirror of a folder that answers range requests, as Common Crawl's HTTPS endpoint serves its files.

Sources by reference (:mod:`infra.remote`) are read in ranges; this serves a folder the same way on 127.0.0.1
for the demo, tests and benchmarks: ``HEAD`` gives the size, ``GET`` with ``Range: bytes=a-b`` gives ``206`` and
those bytes, a missing file is a ``404``. Two things a real transfer meets can be staged: :meth:`MirrorServer.cut`
makes the next responses that cross a byte offset of a file stop there (the connection closed, the declared
length not reached), as many times as asked; and every ``GET`` is logged as (path, first byte), so a caller can
see where a transfer resumed.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from infra.sample_web.server import QuietHandler, QuietServer

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Server(QuietServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], root: Path) -> None:
        self.root = root.resolve()
        self.lock = threading.Lock()
        self.cuts: dict[str, tuple[int, int]] = {}  # path -> (offset, responses left to cut)
        self.gets: list[tuple[str, int]] = []
        super().__init__(address, _Handler)


class _Handler(QuietHandler):
    server: _Server
    server_version = "mirror/1.0"

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def _file(self) -> tuple[str, Path | None]:
        path = unquote(urlsplit(self.path).path)
        candidate = (self.server.root / path.lstrip("/")).resolve()
        if "\x00" in path or not candidate.is_relative_to(self.server.root) or not candidate.is_file():
            return path, None
        return path, candidate

    def _serve(self, *, send_body: bool) -> None:
        path, file = self._file()
        if file is None:
            return self._status(404)
        size = file.stat().st_size
        start, end = 0, size
        wanted = self.headers.get("Range")
        if wanted is not None:
            match = _RANGE.match(wanted.strip())
            if match is None or int(match[1]) >= size:
                return self._status(416, {"Content-Range": f"bytes */{size}"})
            start = int(match[1])
            end = min(int(match[2]) + 1, size) if match[2] else size
        self.send_response(206 if wanted is not None else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if wanted is not None:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not send_body:
            return
        with self.server.lock:
            self.server.gets.append((path, start))
            cut, left = self.server.cuts.get(path, (-1, 0))
            if left and start <= cut < end:
                self.server.cuts[path] = (cut, left - 1)
                end = cut
                self.close_connection = True
        with file.open("rb") as f:
            f.seek(start)
            self.wfile.write(f.read(end - start))
        if self.close_connection:
            self.wfile.flush()
            self.connection.shutdown(2)

    def _status(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()


class MirrorServer:
    """A running mirror of ``root``; use as a context manager or call :meth:`close`."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _Server((host, port), Path(root))
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mirror", daemon=True)
        self._thread.start()

    def cut(self, path: str, offset: int, times: int = 1) -> None:
        """The next ``times`` responses for ``path`` (``/a/b.warc.gz``) that cover byte ``offset`` end just before
        it."""
        with self._httpd.lock:
            self._httpd.cuts[path] = (offset, times)

    def gets(self, path: str) -> list[int]:
        """The first byte of every ``GET`` of ``path`` so far, in order."""
        with self._httpd.lock:
            return [start for p, start in self._httpd.gets if p == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MirrorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
