"""A local HTTP server for the sample web: the generated files plus the misbehaving routes a crawler meets.

Routes (every path is relative to the server root; the generator links to each of them):

- ``/<file>``: a file under the site directory; missing files are 404s. Paths that would leave the site
  directory (``..``, encoded or not) are 404s too.
- ``/noai/<file>``: a file served with ``X-Robots-Tag: noai``.
- ``/status/<code>/<anything>``: an empty-ish HTML error page with that status (400-599).
- ``/html-as-image/<anything>``: an HTML page with ``Content-Type: image/jpeg``.
- ``/slow/<seconds>/<path>``: waits ``min(seconds, 30)`` then answers ``/<path>`` as above.
- ``/redirect?to=<url>``: ``302`` to ``url``, whatever it is (an open redirect, for SSRF tests).
- ``/redirect-loop/<name>``: ``302`` to ``/redirect-loop/<name>/b``, which redirects back: a loop.
- ``/trickle/<seconds>/<path>``: ``/<path>`` with its true length, one byte every ``min(seconds, 30)``.
- ``/endless/<bytes>``: ``bytes`` zero bytes with no length, the connection closed after them (a body that
  only its end delimits).
- ``/declared/<bytes>/<path>``: ``/<path>``, declaring ``Content-Length: <bytes>`` however long it is.
- ``/robots/<value>/<path>``: ``/<path>`` with ``X-Robots-Tag: <value>`` (percent-decoded).

The server is a ``ThreadingHTTPServer`` with daemon threads and a listen backlog of 1024, because img2dataset
opens many connections at once and a single-threaded accept loop causes spurious timeouts; it logs nothing.
"""

from __future__ import annotations

import html
import mimetypes
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

MAX_DELAY_S = 30.0
_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".html": "text/html; charset=utf-8"}


class QuietServer(ThreadingHTTPServer):
    """A threaded test server for which clients that time out and hang up are part of the job; anything else is a
    bug worth a traceback."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, no access log, no Python version in the ``Server`` header."""

    protocol_version = "HTTP/1.1"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:
        pass


class _Server(QuietServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], site_dir: Path):
        self.site_dir = site_dir.resolve()
        self.closing = threading.Event()
        super().__init__(address, _Handler)


class _Handler(QuietHandler):
    server: _Server
    server_version = "sample-web/1.0"

    def do_GET(self) -> None:
        self._route(self.path, send_body=True)

    def do_HEAD(self) -> None:
        self._route(self.path, send_body=False)

    def _route(self, raw: str, *, send_body: bool) -> None:
        parts = urlsplit(raw)
        path = unquote(parts.path)
        if path == "/redirect":
            target = parse_qs(parts.query).get("to", [""])[0]
            return self._redirect(target) if target else self._error(400, send_body)
        if path.startswith("/redirect-loop/"):
            return self._redirect(path[:-2] if path.endswith("/b") else path + "/b")
        if path.startswith("/status/"):
            code = path.split("/")[2]
            status = int(code) if code.isdigit() and 400 <= int(code) <= 599 else 400
            return self._error(status, send_body)
        if path.startswith("/html-as-image/"):
            body = b"<!DOCTYPE html><html><body><h1>Not an image</h1><p>Sign in to view.</p></body></html>"
            return self._send(200, "image/jpeg", body, send_body)
        if path.startswith("/slow/"):
            _, _, seconds, rest = path.split("/", 3) if path.count("/") >= 3 else ("", "", "", "")
            try:
                delay = min(max(float(seconds), 0.0), MAX_DELAY_S)
            except ValueError:
                return self._error(400, send_body)
            self.server.closing.wait(delay)
            return self._route("/" + rest, send_body=send_body)
        if path.startswith(("/trickle/", "/declared/", "/robots/")):
            _, kind, value, rest = path.split("/", 3) if path.count("/") >= 3 else ("", "", "", "")
            file = self._resolve("/" + rest)
            if file is None:
                return self._error(404, send_body)
            body = file.read_bytes()
            if kind == "robots":
                return self._send(200, "image/jpeg", body, send_body, {"X-Robots-Tag": value})
            if not value.replace(".", "", 1).isdigit():
                return self._error(400, send_body)
            if kind == "declared":
                return self._send(200, "image/jpeg", body, send_body, length=int(value))
            return self._trickle(body, min(float(value), MAX_DELAY_S), send_body)
        if path.startswith("/endless/"):
            size = path.split("/")[2]
            return self._endless(int(size) if size.isdigit() else 0, send_body)
        headers = {"X-Robots-Tag": "noai"} if path.startswith("/noai/") else {}
        file = self._resolve(path)
        if file is None:
            return self._error(404, send_body)
        content_type = _TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0]
        return self._send(200, content_type or "application/octet-stream", file.read_bytes(), send_body, headers)

    def _resolve(self, path: str) -> Path | None:
        root = self.server.site_dir
        if "\x00" in path:
            return None
        candidate = (root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _error(self, status: int, send_body: bool) -> None:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        body = f"<html><body><h1>{status} {html.escape(phrase)}</h1></body></html>".encode()
        self._send(status, "text/html; charset=utf-8", body, send_body)

    def _trickle(self, body: bytes, interval: float, send_body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(len(body) if send_body else 0):
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()
            if self.server.closing.wait(interval):
                return

    def _endless(self, size: int, send_body: bool) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = bytes(1 << 16)
        sent = 0
        while send_body and sent < size and not self.server.closing.is_set():
            self.wfile.write(chunk[: size - sent])
            sent += len(chunk[: size - sent])

    def _send(
        self,
        status: int,
        content_type: str,
        body: bytes,
        send_body: bool,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class SampleWebServer:
    """A running sample-web server; use as a context manager or call :meth:`close`."""

    def __init__(self, site_dir: Path, host: str = "127.0.0.1", port: int = 0):
        self._httpd = _Server((host, port), Path(site_dir))
        self.host = host
        self.port = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"sample-web:{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SampleWebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(site_dir: Path, host: str = "127.0.0.1", port: int = 0) -> SampleWebServer:
    """Start serving ``site_dir`` in a daemon thread; ``port=0`` picks a free port (see ``.port``, ``.url``)."""
    return SampleWebServer(site_dir, host, port)
