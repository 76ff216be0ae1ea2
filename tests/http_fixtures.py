"""A loopback HTTP server for tests: serve bodies by path, with ETag / Last-Modified, delays and faults.

Example::

    server = FeedServer().start()
    server.set("/feed.xml", body, content_type="application/rss+xml", etag='"v1"')
    requests.get(server.url("/feed.xml"))
    server.stop()
"""
from __future__ import annotations

import dataclasses
import email.utils
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/xml; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    headers: dict = dataclasses.field(default_factory=dict)
    delay: float = 0.0


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                with outer._lock:
                    route = outer.routes.get(self.path)
                    outer.requests.append({"path": self.path, "headers": dict(self.headers)})
                if route is None:
                    self._send(404, b"not found", {"Content-Type": "text/plain"})
                    return
                if route.delay:
                    time.sleep(route.delay)
                headers = {"Content-Type": route.content_type, **route.headers}
                if route.etag:
                    headers["ETag"] = route.etag
                if route.last_modified:
                    headers["Last-Modified"] = route.last_modified
                inm = self.headers.get("If-None-Match")
                ims = self.headers.get("If-Modified-Since")
                if route.status == 200 and (
                    (route.etag and inm == route.etag) or (not route.etag and route.last_modified and ims == route.last_modified)
                ):
                    self._send(304, b"", headers)
                    return
                self._send(route.status, route.body, headers)

            def _send(self, status, body, headers):
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if body:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "FeedServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, path: str, body: bytes | str, **kwargs) -> Route:
        if isinstance(body, str):
            body = body.encode("utf-8")
        route = Route(body=body, **kwargs)
        with self._lock:
            self.routes[path] = route
        return route

    def hits(self, path: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path]


def http_date(ts: float | None = None) -> str:
    return email.utils.formatdate(ts, usegmt=True)
