"""The HTTP client web and rss share, against a real loopback server: retries, 304, caps, charsets, robots.

The connectors' own suites (test_web.py, test_rss.py) cover what each makes of a response; this one
checks the client both use, and that rss gets what web has (retries honouring Retry-After, robots.txt
on request, credentials sent to their origin only).
"""
from __future__ import annotations

import base64
import time

import pytest

from osmosis_beam.core.errors import FatalConnectorError, RetriableConnectorError
from osmosis_beam.io.http.charset import decode_body
from osmosis_beam.io.http.client import HttpClient, RobotsDisallowed
from osmosis_beam.io.rss.source import RSSConnector
from osmosis_beam.io.web.source import WebConnector
from tests.http_fixtures import FeedServer, http_date

FEED = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>Loopback</title>'
    "<item><guid>a</guid><title>A</title><pubDate>Sat, 01 Jun 2024 10:00:00 GMT</pubDate></item>"
    "</channel></rss>"
)


@pytest.fixture
def server():
    s = FeedServer().start()
    yield s
    s.stop()


def client(server_url: str = "http://127.0.0.1/", **options) -> HttpClient:
    config = RSSConnector({"url": server_url, "request_interval": "0s", "retry_backoff": "10ms", **options}).config
    return HttpClient(config, what="rss", accept="*/*", default_hint="check source.url")


def test_rss_retries_429_and_503_honouring_retry_after(server):
    server.set("/f.xml", b"slow down", status=429, content_type="text/plain", headers={"Retry-After": "1"})
    connector = RSSConnector({"url": server.url("/f.xml"), "request_interval": "0s", "retry_backoff": "10ms"})

    def heal(seconds):  # the server recovers while the client waits (sleep is the client's own, real wait)
        time.sleep(seconds)
        if len(server.hits("/f.xml")) == 1:
            server.set("/f.xml", b"oops", status=503, content_type="text/plain")
        else:
            server.set("/f.xml", FEED, content_type="application/rss+xml")

    connector._http.sleep = heal  # noqa: SLF001 - the test's hook between the retries
    started = time.monotonic()
    connector._fetch(None)  # noqa: SLF001
    hits = server.hits("/f.xml")
    assert len(hits) == 3 and connector.unchanged() is False
    assert time.monotonic() - started >= 1.0  # waited for Retry-After: 1
    assert connector._body == FEED.encode()  # noqa: SLF001


def test_a_retry_after_date_and_the_wait_budget(server):
    server.set("/f", b"later", status=503, content_type="text/plain", headers={"Retry-After": http_date(time.time() + 3600)})
    started = time.monotonic()
    with pytest.raises(RetriableConnectorError) as info:
        client(max_retry_wait="2s").get(server.url("/f"))
    assert time.monotonic() - started < 1
    assert "asks to retry after" in info.value.message and "source.max_retry_wait (2s)" in info.value.message
    assert len(server.hits("/f")) == 1


def test_conditional_get_gets_a_304_with_no_body(server):
    server.set("/f", FEED, etag='"v1"', last_modified=http_date(0))
    http = client()
    first = http.get(server.url("/f"))
    assert first.status == 200 and first.headers["etag"] == '"v1"' and first.body == FEED.encode()
    again = http.get(server.url("/f"), {"etag": '"v1"', "last_modified": http_date(0)})
    assert again.status == 304 and again.body == b""
    sent = server.hits("/f")[-1]["headers"]
    assert sent["If-None-Match"] == '"v1"' and sent["If-Modified-Since"] == http_date(0)


def test_the_size_cap_applies_to_declared_and_received_bytes(server):
    big = b"<rss>" + b"x" * 50_000 + b"</rss>"
    server.set("/big", big)
    with pytest.raises(FatalConnectorError, match=r"\d+ bytes, larger than source.max_bytes \(4096 bytes\)"):
        client(max_bytes=4096).get(server.url("/big"))
    assert client(max_bytes=len(big)).get(server.url("/big")).body == big


@pytest.mark.parametrize(
    "body, content_type, expected, how",
    [
        # a wrong HTTP charset is believed (as browsers do) unless a byte-order mark says otherwise
        ("Grüße".encode("utf-8"), "text/html; charset=utf-8", "Grüße", "HTTP charset"),
        (b"\xef\xbb\xbf" + "Grüße".encode("utf-8"), "text/html; charset=iso-8859-1", "Grüße", "byte-order mark"),
        # no charset anywhere: UTF-8 when it decodes, else detected (windows-1252 preferred)
        ("Café crème brûlée, déjà vu".encode("cp1252"), "text/html", "Café crème brûlée, déjà vu", "detected"),
        ("naïve".encode("utf-8"), None, "naïve", "detected"),
        # an unknown charset label is ignored, not fatal
        ("Grüße".encode("utf-8"), "text/html; charset=x-no-such-thing", "Grüße", "detected"),
    ],
)
def test_documents_decode_with_wrong_or_missing_charsets(body, content_type, expected, how, server):
    server.set("/p", body, content_type=content_type or "")
    resp = client().get(server.url("/p"))
    text, _, found = decode_body(resp.body, resp.headers.get("content-type") or None)
    assert text == expected and found == how


def test_rss_reads_robots_txt_only_when_asked(server):
    server.set("/robots.txt", b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    server.set("/private/f.xml", FEED, content_type="application/rss+xml")
    RSSConnector({"url": server.url("/private/f.xml")}).begin_run({})  # feed readers do not read robots.txt
    assert server.hits("/robots.txt") == []
    with pytest.raises(RobotsDisallowed, match="robots.txt .* disallows it"):
        RSSConnector({"url": server.url("/private/f.xml"), "respect_robots_txt": True}).begin_run({})


def test_rss_url_credentials_go_to_their_origin_as_basic_auth_and_are_never_shown(server):
    server.set("/f.xml", FEED, content_type="application/rss+xml")
    url = server.url("/f.xml").replace("http://", "http://reader:s3cr3t-pw@")
    connector = RSSConnector({"url": url})
    connector.begin_run({})
    sent = server.hits("/f.xml")[-1]["headers"]
    assert sent["Authorization"] == "Basic " + base64.b64encode(b"reader:s3cr3t-pw").decode()
    (record,) = connector.read_window(None, connector.source_clock())
    assert record["feed_url"] == server.url("/f.xml")
    assert "s3cr3t-pw" not in repr(connector.display()) and "s3cr3t-pw" not in repr(connector.__getstate__())


def test_web_and_rss_use_the_one_client():
    web = WebConnector({"url": "http://127.0.0.1/", "item_selector": "a", "fields": {"t": "a"}})
    rss = RSSConnector({"url": "http://127.0.0.1/f.xml"})
    assert type(web._http) is type(rss._http) is HttpClient  # noqa: SLF001
