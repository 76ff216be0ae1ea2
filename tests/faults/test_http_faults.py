"""HTTP faults against real loopback servers: slowloris, endless 503s, TLS spoken to a plain server, nothing listening.

A slowloris server answers one byte at a time, slower than any per-read timeout notices. Before the
shared client had a total deadline, rss and web hung on it forever even with ``timeout: 5s``. Now a
run fails within ``source.deadline`` with a clear, retriable error, the run is marked failed in the
history, the watermark stays, and a re-run against a healthy server delivers everything once.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import FatalConnectorError, RetriableConnectorError, RunError
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.io.http.client import HttpClient
from osmosis_beam.io.rss.source import RSSConnector
from osmosis_beam.io.web.source import WebConnector
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.http_fixtures import FeedServer

FEED = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>'
    + "".join(
        f"<item><guid>e{i}</guid><title>Entry {i}</title><pubDate>Sat, 01 Jun 2024 1{i}:00:00 GMT</pubDate></item>"
        for i in range(3)
    )
    + "</channel></rss>"
).encode()
PAGE = b"<html><body>" + b"".join(b'<article class="post"><h2>Post %d</h2></article>' % i for i in range(3)) + b"</body></html>"


class Slowloris:
    """A TCP server that answers every request one byte every ``interval`` seconds, for ever.

    ``stage="headers"`` trickles the status line and headers; ``stage="body"`` sends the headers at
    once (with a Content-Length it never reaches) and trickles the body.
    """

    def __init__(self, stage: str, interval: float = 0.2) -> None:
        self.stage, self.interval = stage, interval
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.bytes_sent = 0
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n"
        body = b"<html><body>" + b" " * 100_000
        try:
            conn.recv(65536)
            if self.stage == "body":
                conn.sendall(head)
                data = body
            else:
                data = head + body
            for i in range(len(data)):
                if self._stop.is_set():
                    break
                conn.sendall(data[i:i + 1])
                self.bytes_sent += 1
                time.sleep(self.interval)
        except OSError:
            pass  # the client gave up: what a deadline is for
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def slowloris(request):
    servers = []

    def make(stage: str) -> Slowloris:
        server = Slowloris(stage)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def healthy():
    server = FeedServer().start()
    yield server
    server.stop()


def _sync(tmp_path: Path, home: Path, source: dict):
    raw = {"id": "slow", "source": source, "sink": {"type": "jsonl", "path": str(tmp_path / "out")}}
    spec = parse_pipeline(raw, path=str(tmp_path / "slow.yaml"))
    store = SQLiteStateStore(home / "state.db")
    return spec, store


def _web(url: str, **extra) -> dict:
    return {"type": "web", "url": url, "item_selector": "article.post", "fields": {"title": "h2"},
            "respect_robots_txt": False, "request_interval": "0s", **extra}


def _rss(url: str, **extra) -> dict:
    return {"type": "rss", "url": url, "request_interval": "0s", **extra}


@pytest.mark.parametrize("kind", ["rss", "web"])
@pytest.mark.parametrize("stage", ["headers", "body"])
def test_a_slowloris_server_fails_the_run_within_the_deadline(kind, stage, slowloris, healthy, tmp_path, home, faults):
    server = slowloris(stage)
    make = _rss if kind == "rss" else _web
    spec, store = _sync(tmp_path, home, make(server.url("/f"), timeout="5s", deadline="1500ms"))
    faults.injected()

    started = time.monotonic()
    with pytest.raises(RunError) as info:
        SyncRunner(spec, store, home=home).run()
    elapsed = time.monotonic() - started

    # within the deadline, long before the per-read timeout (5 s) would notice anything
    assert elapsed < 4.5, elapsed
    assert server.bytes_sent > 2  # the server really was sending all along
    message = str(info.value)
    assert "did not finish within source.deadline (1.5s" in message and "retry later" in message, message
    assert server.url("/f") in message
    (run,) = store.list_runs("slow")
    assert run.status == "failed" and "source.deadline" in run.error
    assert store.get_watermark("slow").value is None
    assert server.connections == 1  # a request past its deadline is not retried within the run

    # The same pipeline against a healthy server delivers everything, once.
    if kind == "rss":
        healthy.set("/f", FEED, content_type="application/rss+xml")
    else:
        healthy.set("/f", PAGE, content_type="text/html; charset=utf-8")
    spec, store = _sync(tmp_path, home, make(healthy.url("/f"), timeout="5s", deadline="1500ms"))
    done = SyncRunner(spec, store, home=home).run()
    records = list(read_jsonl_dir(tmp_path / "out"))
    assert done.records_written == 3 and len(records) == 3
    faults.checked(len(records))


def test_the_page_deadline_bounds_retries_and_their_waits(healthy, faults):
    healthy.set("/busy", b"busy", status=503, content_type="text/plain", headers={"Retry-After": "1"})
    config = RSSConnector({"url": healthy.url("/busy"), "page_deadline": "2500ms", "retries": 50,
                           "request_interval": "0s"}).config
    client = HttpClient(config, what="rss", accept="*/*")
    faults.injected()
    started = time.monotonic()
    with pytest.raises(RetriableConnectorError) as info:
        client.get(healthy.url("/busy"))
    elapsed = time.monotonic() - started
    assert elapsed < 3.5, elapsed
    assert "source.page_deadline (2.5s)" in info.value.message and "503 Service Unavailable" in info.value.message
    assert 2 <= len(healthy.hits("/busy")) <= 4  # honoured Retry-After: 1 between the tries


@pytest.mark.parametrize("kind", ["rss", "web"])
def test_connection_errors_are_said_plainly(kind, healthy, faults):
    healthy.set("/f", FEED)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens on this port now
    make = RSSConnector if kind == "rss" else WebConnector
    options = _rss if kind == "rss" else _web

    faults.injected()
    refused = make({k: v for k, v in options(f"http://127.0.0.1:{port}/f", retries=0).items() if k != "type"})
    with pytest.raises(RetriableConnectorError) as info:
        refused.begin_run({})
    message = info.value.message
    assert f"nothing accepts connections on 127.0.0.1:{port} (connection refused)" in message, message
    assert "check the host and port in source.url" in message
    assert "HTTPConnectionPool" not in message and "Errno" not in message and "Max retries" not in message

    faults.injected()  # TLS spoken to a plain-HTTP server
    tls = make({k: v for k, v in options(healthy.url("/f").replace("http://", "https://"), retries=0).items() if k != "type"})
    with pytest.raises(FatalConnectorError) as info:
        tls.begin_run({})
    message = info.value.message
    assert "the TLS handshake with 127.0.0.1:" in message and "source.verify_tls" in message, message
    assert "HTTPSConnectionPool" not in message and "Max retries" not in message


def test_a_slow_server_that_keeps_within_the_deadline_is_read(healthy, faults):
    """The deadline stops stalls, not honest downloads: a body sent within it arrives whole."""
    healthy.set("/f", FEED, content_type="application/rss+xml", delay=0.5)
    connector = RSSConnector({"url": healthy.url("/f"), "deadline": "3s", "request_interval": "0s"})
    connector.begin_run({})
    assert len(list(connector.read_window(None, connector.source_clock()))) == 3
    faults.checked(3)
