"""The view's HTTP server: the page from static/, and the events at /api/trace, with the standard library only.

A viewer should run wherever `posnet` runs, offline and with no extra
dependency, so this is `http.server.ThreadingHTTPServer` (one thread per
request: the page's poll never waits behind a slow first load).

    GET /                      the page (static/index.html)
    GET /static/NAME           its script and style
    GET /api/trace             {"name", "live", "summary", "events", "marks", "since": 0, "total"}
    GET /api/trace?since=N     the same with the events from index N on (N: how many the page holds),
                               and the round marks at or after N; a live page polls this every second
"""

from __future__ import annotations

import json
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from network.view.source import Source

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def static_file(name: str) -> bytes | None:
    """A file shipped in network/view/static (None: not one of them; no path ever leaves that folder)."""
    if "/" in name or "\\" in name or name.startswith(".") or not name:
        return None
    entry = resources.files("network.view").joinpath("static").joinpath(name)
    return entry.read_bytes() if entry.is_file() else None


def trace_payload(source: Source, since: int) -> dict[str, Any]:
    events, marks, total = source.since(since)
    return {
        "name": source.name,
        "live": source.live,
        "summary": source.summary(),
        "events": events,
        "marks": marks,
        "since": since,
        "total": total,
    }


class ViewHandler(BaseHTTPRequestHandler):
    """Routes GETs to the page, its files and the trace API; `source` is set on the server."""

    server: ViewServer
    server_version = "posnet-view"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._static("index.html")
        elif url.path.startswith("/static/"):
            self._static(url.path.removeprefix("/static/"))
        elif url.path == "/api/trace":
            self._trace(parse_qs(url.query))
        elif url.path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _static(self, name: str) -> None:
        body = static_file(name)
        if body is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            return
        suffix = name[name.rfind(".") :]
        self._send(HTTPStatus.OK, body, STATIC_TYPES.get(suffix, "application/octet-stream"))

    def _trace(self, query: dict[str, list[str]]) -> None:
        raw = query.get("since", ["0"])[-1]
        if not raw.isdigit():
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"since must be a count of events, not {raw!r}"})
            return
        self._json(HTTPStatus.OK, trace_payload(self.server.source, int(raw)))

    def _json(self, status: HTTPStatus, value: Any) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a page polling every second would otherwise print a line a second."""


class ViewServer(ThreadingHTTPServer):
    """A threading HTTP server that knows which source it serves."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], source: Source) -> None:
        self.source = source
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ViewHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}/"
