"""The web scraper connector against real HTTP on loopback.

``Site`` is a small ``http.server`` that serves a sequence of responses per path (so a test can
answer 429 then 200), redirects, robots.txt, slow and oversized pages, ETag / 304, and a settable
``Date`` header (the source clock of a connector with a date field).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import (
    ConfigError,
    FatalConnectorError,
    RetriableConnectorError,
)
from osmosis_beam.core.records import DeadLetter
from osmosis_beam.core.timefmt import parse_timestamp
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.io.web.source import WebConnector
from osmosis_beam.registry import default_registry
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner

HTML = "text/html; charset=utf-8"


# ---------------------------------------------------------------------------------------------
# A loopback web site
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    content_type: str | None = HTML
    headers: dict = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    etag: str | None = None
    length: bool = True  # send Content-Length (else the body ends when the connection closes)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):  # a client that hung up (timeout tests) is expected
        pass


class Site:
    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.log: list[tuple[float, str, dict]] = []
        self.date: str | None = None  # the Date header to send (None: the real clock)
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def date_time_string(self, timestamp=None):
                return site.date or super().date_time_string(timestamp)

            def do_GET(self):
                with site._lock:
                    site.log.append((time.monotonic(), self.path, dict(self.headers)))
                    replies = site.routes.get(self.path)
                    reply = (replies.pop(0) if len(replies) > 1 else replies[0]) if replies else None
                if reply is None:
                    reply = Reply(b"not found", 404, "text/plain")
                if reply.delay:
                    time.sleep(reply.delay)
                status, body = reply.status, reply.body
                if reply.etag and self.headers.get("If-None-Match") == reply.etag and status == 200:
                    status, body = 304, b""
                try:
                    self.send_response(status)
                    if reply.content_type:
                        self.send_header("Content-Type", reply.content_type)
                    if reply.etag:
                        self.send_header("ETag", reply.etag)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    if reply.length or status == 304:
                        self.send_header("Content-Length", str(len(body)))
                    else:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    if body:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def set(self, path: str, *replies: Reply | str | bytes, **kwargs) -> None:
        made = []
        for reply in replies:
            if isinstance(reply, str):
                reply = reply.encode("utf-8")
            made.append(reply if isinstance(reply, Reply) else Reply(reply, **kwargs))
        with self._lock:
            self.routes[path] = made

    def hits(self, path: str) -> list[tuple[float, str, dict]]:
        with self._lock:
            return [entry for entry in self.log if entry[1] == path]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def site():
    s = Site()
    yield s
    s.stop()


def connector(site: Site, path: str = "/", **options) -> WebConnector:
    config = {
        "url": site.url(path),
        "item_selector": "article.post",
        "fields": {"title": "h2 a", "link": "h2 a::attr(href)"},
        "request_interval": 0,
        "retry_backoff": "20ms",
        "timeout": "5s",
    }
    config.update(options)
    return WebConnector({k: v for k, v in config.items() if v is not None})


def read(c: WebConnector, state=None, lo=None):
    """One run's read on the launcher: (records, dead letters)."""
    c.connect()
    try:
        c.begin_run(state or {})
        out = list(c.read_window(lo, c.source_clock()))
    finally:
        c.disconnect()
    return [r for r in out if not isinstance(r, DeadLetter)], [r for r in out if isinstance(r, DeadLetter)]


def post(ident: str, *, href: str | None = None, date: str | None = None, extra: str = "") -> str:
    when = f'<time datetime="{date}">{date}</time>' if date else ""
    return (
        f'<article class="post" data-id="{ident}"><h2><a href="{href or "/posts/" + ident}">Post {ident}</a></h2>'
        f"{when}{extra}</article>"
    )


def page(*posts: str, next_href: str | None = None, head: str = "", title: str = "List") -> str:
    nav = f'<a rel="next" href="{next_href}">Older</a>' if next_href else ""
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title>{head}</head>"
        f"<body><main>{''.join(posts)}</main><nav>{nav}</nav></body></html>"
    )


# ---------------------------------------------------------------------------------------------
# Pages, selectors, links
# ---------------------------------------------------------------------------------------------


def test_pagination_relative_links_and_field_syntax(site):
    rich = (
        '<img src="img/{i}.png"><p class="lead">Lead <b>bold</b>\n   text<script>var x = "<li>";</script></p>'
        '<ul class="tags"><li>x</li><li> </li><li>y</li></ul>'
    )
    site.set("/news/", page(*(post(f"a{i}", href=f"../posts/a{i}", extra=rich.format(i=i)) for i in (1, 2, 3)),
                            next_href="?page=2"))
    site.set("/news/?page=2", page(*(post(f"b{i}", extra=rich.format(i=i)) for i in (1, 2, 3)), next_href="page3.html#top"))
    # <base href> changes what relative links resolve against; the next link loops back to page 1.
    site.set("/news/page3.html", page(post("c1", href="item-c1", extra=rich.format(i=9)), head='<base href="/archive/">',
                                      next_href="/news/"))
    c = connector(
        site, "/news/", next_page="a[rel=next]",
        fields={
            "title": "h2 a",
            "link": "h2 a::attr(href)",
            "image": "img @src",
            "ident": "@data-id",
            "lead": "p.lead",
            "lead_html": "p.lead::html",
            "tags": {"selector": "ul.tags li", "all": True},
            "third_tag": "ul.tags li:nth-child(3)",
            "not_lead?": "p:not(.lead)::text",
        },
    )
    records, dead = read(c)
    assert dead == []
    assert [r["ident"] for r in records] == ["a1", "a2", "a3", "b1", "b2", "b3", "c1"]
    first = records[0]
    assert first["title"] == "Post a1"
    assert first["link"] == site.url("/posts/a1")  # ../posts/a1 from /news/
    assert first["image"] == site.url("/news/img/1.png")
    assert first["lead"] == "Lead bold text"  # whitespace collapsed, no script text
    assert first["lead_html"].startswith("Lead <b>bold</b>") and "<script>" in first["lead_html"]
    assert first["tags"] == ["x", "y"]
    assert first["third_tag"] == "y" and first["not_lead"] is None
    assert first["page_url"] == site.url("/news/")
    assert records[3]["link"] == site.url("/posts/b1") and records[3]["page_url"] == site.url("/news/?page=2")
    last = records[-1]
    assert last["link"] == site.url("/archive/item-c1") and last["image"] == site.url("/archive/img/9.png")
    assert last["page_url"] == site.url("/news/page3.html")
    assert isinstance(first["fetched_at"], dt.datetime) and first["fetched_at"].tzinfo is not None
    assert len({r["id"] for r in records}) == 7
    # Each page once (the loop back to /news/ is not followed), robots.txt once per host.
    assert len(site.hits("/news/")) == 1 and len(site.hits("/robots.txt")) == 1
    assert site.hits("/news/")[0][2]["User-Agent"].startswith("osmosis-beam/")

    # max_pages stops the crawl.
    site.log.clear()
    records, _ = read(connector(site, "/news/", next_page="a[rel=next]", max_pages=2))
    assert len(records) == 6 and site.hits("/news/page3.html") == []


def test_xpath_selectors_and_several_start_urls(site):
    site.set("/a", page(post("1", extra="<ul><li>p</li><li>q</li></ul>"), post("2"), next_href="/a2"))
    site.set("/a2", page(post("3")))
    site.set("/b", page(post("4")))
    c = WebConnector({
        "urls": [site.url("/a"), site.url("/b")],
        "item_selector": "//article[@class='post']",
        "fields": {"title": "string(.//h2)", "link": ".//h2/a/@href", "items": "count(.//li)",
                   "ident": "./@data-id", "has_list": "boolean(.//ul)"},
        "next_page": "//a[@rel='next']/@href",
        "request_interval": 0,
    })
    records, dead = read(c)
    assert dead == []
    assert [(r["ident"], r["items"], r["has_list"]) for r in records] == [
        ("1", 2, True), ("2", 0, False), ("3", 0, False), ("4", 0, False)]
    assert records[0]["title"] == "Post 1" and records[0]["link"] == site.url("/posts/1")


def test_malformed_html_is_recovered_like_a_browser(site):
    broken = (
        b"<html><head><title>Broken</title><body>\n"
        b"<div class=list>\n"
        b"<article class=post data-id=m1><h2><a href=/posts/m1>Unclosed &amp; unquoted</h2><p>one\n"
        b"<article class='post' data-id=m2><h2><a href='/posts/m2'>Caf&eacute; &nbsp;two&#33;</a></h2></span></em>\n"
        b"<article class=\"post\" data-id=\"m3\"><h2><a href=\"/posts/m3\">three <!-- c --> <b>bold</a></h2>\n"
        b"</div></div></table>\x00<p>trailing"
    )
    site.set("/broken", broken, content_type="text/html")
    records, dead = read(connector(site, "/broken", fields={"title": "h2 a", "link": "h2 a::attr(href)",
                                                           "ident": "@data-id"}))
    assert dead == []
    assert [(r["ident"], r["title"], r["link"]) for r in records] == [
        ("m1", "Unclosed & unquoted", site.url("/posts/m1")),
        ("m2", "Café two!", site.url("/posts/m2")),
        ("m3", "three bold", site.url("/posts/m3")),
    ]


def test_missing_required_field_goes_to_dead_letter_once(site):
    site.set("/", page(
        post("1", extra='<p class="lead">lead 1</p>'),
        '<article class="post" data-id="2"><h2>No link here</h2></article>',
        post("3"),
    ))
    c = connector(site, fields={"title": "h2", "link": "h2 a::attr(href)", "lead?": "p.lead",
                                "ident": {"selector": "@data-id", "required": True}})
    records, dead = read(c)
    assert [r["ident"] for r in records] == ["1", "3"]
    assert records[0]["lead"] == "lead 1" and records[1]["lead"] is None  # optional: null when missing
    [letter] = dead
    assert letter.step == "read: web"
    assert "item 2" in letter.error and "required field 'link'" in letter.error and "matched nothing" in letter.error
    assert letter.record["title"] == "No link here" and letter.record["link"] is None
    # The next run neither delivers the old items nor dead-letters the broken one again.
    state = c.end_state(_window(c))
    records2, dead2 = read(c, state)
    assert records2 == [] and dead2 == []


def test_id_fields_choose_what_identifies_an_item(site):
    site.set("/", page(post("1")))
    c = connector(site, id_fields=["link"])
    [first], _ = read(c)
    state = c.end_state(_window(c))
    site.set("/", page(post("1").replace("Post 1", "Post 1 (updated)")))
    c2 = connector(site, id_fields=["link"])
    assert read(c2, state) == ([], [])  # same link: the same item, not delivered again
    c3 = connector(site)  # default: every field; the new title makes it a new item
    [changed], _ = read(c3, state)
    assert changed["title"] == "Post 1 (updated)" and changed["id"] != first["id"]


def test_credentials_in_url_go_to_their_origin_only_and_are_never_shown(site):
    site.set("/p1", Reply(page(post("1"), next_href="/p2").encode(), etag='"1"'))
    site.set("/p2", page(post("2")))
    secret_url = site.url("/p1").replace("http://", "http://reader:hunter22@")
    c = connector(site, "/p1", url=secret_url, next_page="a[rel=next]")
    records, _ = read(c)
    assert [r["page_url"] for r in records] == [site.url("/p1"), site.url("/p2")]
    auth = [entry[2].get("Authorization", "") for entry in site.log]
    assert len(auth) == 3 and all(a.startswith("Basic ") for a in auth)  # robots.txt and both pages
    assert "hunter22" not in repr(c.end_state(_window(c))) and "hunter22" not in repr(records)
    shown = connector(site, "/p1", url=secret_url, headers={"Cookie": "s=1"}).display()
    assert "hunter22" not in repr(shown) and shown["headers"] == {"Cookie": "***"}
    # What travels to the Beam workers holds the items, not the credentials or headers.
    shipped = pickle.loads(pickle.dumps(c))
    assert b"hunter22" not in pickle.dumps(c) and shipped.config["headers"] == {}
    assert [r["page_url"] for r in shipped.read_window(None, c.source_clock())] == [site.url("/p1"), site.url("/p2")]


def _window(c):
    from osmosis_beam.core.window import SyncWindow

    return SyncWindow(None, c.source_clock())


# ---------------------------------------------------------------------------------------------
# Encodings
# ---------------------------------------------------------------------------------------------

RUSSIAN = ("Съешь же ещё этих мягких французских булок, да выпей чаю. "
           "Широкая электрификация южных губерний даст мощный толчок подъёму сельского хозяйства.")


def _encoded(text: str, encoding: str, head: str = "") -> bytes:
    return page(post("1").replace("Post 1", text), head=head).encode(encoding)


@pytest.mark.parametrize(
    "body, content_type, expected",
    [
        # HTTP charset wins over <meta>; iso-8859-1 is decoded as windows-1252, as browsers do.
        pytest.param(_encoded("Café – naïve", "cp1252", '<meta charset="utf-8">'), "text/html; charset=ISO-8859-1",
                     "Café – naïve", id="http-charset"),
        pytest.param(_encoded(RUSSIAN, "cp1251", '<meta charset="windows-1251">'), "text/html", RUSSIAN, id="meta-charset"),
        pytest.param(_encoded(RUSSIAN, "koi8-r", '<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">'),
                     None, RUSSIAN, id="meta-http-equiv"),
        pytest.param(_encoded(RUSSIAN, "cp1251"), "text/html", RUSSIAN, id="detected-cp1251"),
        pytest.param(_encoded("Grüße, 東京 ✓", "utf-8"), "text/html", "Grüße, 東京 ✓", id="detected-utf8"),
        pytest.param(b"\xef\xbb\xbf" + _encoded("Grüße ✓", "utf-8"), "text/html; charset=iso-8859-1", "Grüße ✓",
                     id="bom-over-http"),
        pytest.param(_encoded("Grüße ✓", "utf-16"), "text/html", "Grüße ✓", id="utf16-bom"),
    ],
)
def test_encodings(site, body, content_type, expected):
    site.set("/", body, content_type=content_type)
    records, dead = read(connector(site))
    assert dead == [] and records[0]["title"] == expected


# ---------------------------------------------------------------------------------------------
# Politeness and safety
# ---------------------------------------------------------------------------------------------

ROBOTS = b"User-agent: osmosis-beam\nDisallow: /private/\n\nUser-agent: mybot\nDisallow: /\n\nUser-agent: *\nAllow: /\n"


def test_robots_txt_disallow(site, caplog):
    site.set("/robots.txt", ROBOTS, content_type="text/plain")
    site.set("/private/list", page(post("1")))
    site.set("/public/list", page(post("2"), next_href="/private/list"))
    with pytest.raises(FatalConnectorError) as err:
        read(connector(site, "/private/list"))
    assert "robots.txt" in err.value.message and "disallows" in err.value.message and "osmosis-beam/" in err.value.message
    assert site.hits("/private/list") == []
    # A disallowed next page ends the pagination; the allowed pages are read.
    with caplog.at_level(logging.WARNING, logger="osmosis_beam.io.web.source"):
        records, _ = read(connector(site, "/public/list", next_page="a[rel=next]"))
    assert [r["title"] for r in records] == ["Post 2"] and site.hits("/private/list") == []
    assert "disallows it" in caplog.text and "pagination stops here" in caplog.text
    # The configured User-Agent is the one matched; respect_robots_txt: false skips the check.
    with pytest.raises(FatalConnectorError, match="robots.txt"):
        read(connector(site, "/public/list", user_agent="MyBot/2.0"))
    records, _ = read(connector(site, "/private/list", respect_robots_txt=False))
    assert [r["title"] for r in records] == ["Post 1"]
    # robots.txt that cannot be read because of a server error: no crawling (RFC 9309), retry later.
    site.set("/robots.txt", Reply(b"down", 503, "text/plain"))
    with pytest.raises(RetriableConnectorError, match="robots.txt: the server answered 503"):
        read(connector(site, "/public/list"))
    assert len(site.hits("/public/list")) == 1  # only the earlier, allowed read


def test_retries_429_and_503_honouring_retry_after(site):
    site.set("/", Reply(b"slow down", 429, "text/plain", headers={"Retry-After": "1"}),
             Reply(b"oops", 503, "text/plain"), Reply(page(post("1")).encode()))
    started = time.monotonic()
    records, _ = read(connector(site, retries=3))
    elapsed = time.monotonic() - started
    assert [r["title"] for r in records] == ["Post 1"]
    hits = site.hits("/")
    assert len(hits) == 3
    assert hits[1][0] - hits[0][0] >= 0.95  # waited for Retry-After: 1
    assert elapsed < 3

    # A Retry-After beyond max_retry_wait fails at once, as retriable.
    site.set("/", Reply(b"later", 429, "text/plain", headers={"Retry-After": "3600"}))
    started = time.monotonic()
    with pytest.raises(RetriableConnectorError) as err:
        read(connector(site, max_retry_wait="2s"))
    assert time.monotonic() - started < 1
    assert "3600s" in err.value.message and "max_retry_wait" in err.value.message

    # A persistent 5xx gives up after the configured retries.
    site.log.clear()
    site.set("/", Reply(b"down", 500, "text/plain"))
    with pytest.raises(RetriableConnectorError, match=r"500 .*gave up after 3 attempts"):
        read(connector(site, retries=2))
    assert len(site.hits("/")) == 3


def test_slow_server_times_out(site):
    site.set("/", Reply(page(post("1")).encode(), delay=3))
    started = time.monotonic()
    with pytest.raises(RetriableConnectorError) as err:
        read(connector(site, timeout="300ms", retries=0))
    assert time.monotonic() - started < 2
    assert "timed out after 0.3s" in err.value.message and "source.timeout" in err.value.message


def test_oversized_page_is_refused(site):
    big = page(*(post(str(i)) for i in range(200))).encode()
    site.set("/declared", big)
    site.set("/streamed", Reply(big, length=False))
    for path in ("/declared", "/streamed"):
        with pytest.raises(FatalConnectorError, match=r"larger than source.max_bytes \(4000 bytes\)"):
            read(connector(site, path, max_bytes=4000))
    assert len(read(connector(site, "/streamed"))[0]) == 200


def test_redirects(site):
    site.set("/a", Reply(status=302, headers={"Location": "/b"}))
    site.set("/b", Reply(status=301, headers={"Location": site.url("/a")}))
    with pytest.raises(FatalConnectorError, match=r"redirect loop \(.*/a -> .*/b -> .*/a\)"):
        read(connector(site, "/a"))
    for i in range(7):
        site.set(f"/hop{i}", Reply(status=307, headers={"Location": f"/hop{i + 1}"}))
    with pytest.raises(FatalConnectorError, match=r"more than source.max_redirects \(5\)"):
        read(connector(site, "/hop0"))
    site.set("/ftp", Reply(status=302, headers={"Location": "ftp://127.0.0.1/list"}))
    with pytest.raises(FatalConnectorError, match="only http and https"):
        read(connector(site, "/ftp"))
    # A good redirect: relative links resolve against the final URL.
    site.set("/old", Reply(status=301, headers={"Location": "/new/list.html"}))
    site.set("/new/list.html", page(post("1", href="p1")))
    records, _ = read(connector(site, "/old"))
    assert records[0]["link"] == site.url("/new/p1") and records[0]["page_url"] == site.url("/new/list.html")


def test_per_host_rate_limit(site):
    site.set("/p1", page(post("1"), next_href="/p2"))
    site.set("/p2", page(post("2"), next_href="/p3"))
    site.set("/p3", page(post("3")))
    records, _ = read(connector(site, "/p1", next_page="a[rel=next]", request_interval="250ms"))
    assert len(records) == 3
    times = [t for t, _, _ in site.log]  # robots.txt, p1, p2, p3
    assert len(times) == 4 and all(b - a >= 0.24 for a, b in zip(times, times[1:]))


def test_conditional_get_per_page(site):
    site.set("/p1", Reply(page(post("1"), next_href="/p2").encode(), etag='"p1-v1"'))
    site.set("/p2", Reply(page(post("2")).encode(), etag='"p2-v1"'))
    c = connector(site, "/p1", next_page="a[rel=next]")
    records, _ = read(c)
    state = c.end_state(_window(c))
    assert state["pages"][site.url("/p1")]["etag"] == '"p1-v1"'
    # Nothing changed: two 304s (page 2 is found through the remembered link) and nothing to read.
    c2 = connector(site, "/p1", next_page="a[rel=next]")
    assert read(c2, state) == ([], [])
    assert c2.unchanged()
    assert site.hits("/p2")[-1][2]["If-None-Match"] == '"p2-v1"'
    # Page 2 changed: only its new item is delivered.
    site.set("/p2", Reply(page(post("2b"), post("2")).encode(), etag='"p2-v2"'))
    c3 = connector(site, "/p1", next_page="a[rel=next]")
    records, _ = read(c3, state)
    assert not c3.unchanged() and [r["title"] for r in records] == ["Post 2b"]


# ---------------------------------------------------------------------------------------------
# test_connection, get_schema, configuration
# ---------------------------------------------------------------------------------------------


def test_test_connection_and_schema(site):
    site.set("/", page(post("1", date="2024-05-01T10:00:00Z", extra='<p class="lead">x</p><span class="n">3</span>'),
                       post("2", date="2024-05-02T10:00:00+02:00"), next_href="/page2"))
    site.set("/empty", page(title="Nothing here"))
    c = connector(site, fields={"title": "h2 a", "link": "h2 a::attr(href)", "published": "time::attr(datetime)",
                                "lead?": "p.lead", "count?": "count(.//li)", "tags": {"selector": "li", "all": True,
                                                                                     "required": False}},
                  date_field="published", next_page="a[rel=next]")
    message = c.test_connection()
    assert "'article.post' matched 2 items" in message and "lead 1/2" in message
    assert f"next page {site.url('/page2')}" in message
    schema = c.get_schema()
    types = {f["name"]: (f["type"], f["nullable"]) for f in schema["fields"]}
    assert types["title"] == ("string", False) and types["published"] == ("timestamp", False)
    assert types["lead"] == ("string", True) and types["count"] == ("integer", True)
    assert types["tags"] == ("array<string>", True)
    assert types["id"] == ("string", False) and types["fetched_at"] == ("timestamp", False)
    assert schema["cursor_field"] == "published" and schema["sample_items"] == 2

    with pytest.raises(FatalConnectorError) as err:
        connector(site, "/empty").test_connection()
    assert "item_selector 'article.post' matched no element" in err.value.message


def test_config_errors_are_reported_together(tmp_path):
    data = {
        "id": "bad",
        "source": {
            "type": "web", "url": "ftp://example.org/", "urls": ["http://example.org/"],
            "item_selector": "article[", "fields": {"title": "h2", "page_url": "a", "x": {"selector": "p", "all": "yes"}},
            "date_field": "published", "next_page": "//a[", "timezone": "Mars/Olympus",
        },
        "sink": {"type": "jsonl", "path": "out"},
    }
    with pytest.raises(ConfigError) as err:
        parse_pipeline(data, path=str(tmp_path / "bad.yaml"))
    text = "\n".join(err.value.problems)
    for expected in ("source.url: give url or urls, not both", "source.url: 'ftp://example.org/' is not an http(s) URL",
                     "source.item_selector: invalid CSS selector",
                     "source.fields.page_url: 'page_url' is set by the connector",
                     "source.fields.x: all must be true or false", "source.next_page: invalid XPath",
                     "source.date_field: 'published' is not one of the fields", "source.timezone: unknown time zone"):
        assert expected in text, text
    assert default_registry().connector("web") is WebConnector


# ---------------------------------------------------------------------------------------------
# Sync runs
# ---------------------------------------------------------------------------------------------


def _spec(tmp_path, source, **extra):
    data = {"id": "web", "source": {"type": "web", "request_interval": 0, **source},
            "sink": {"type": "jsonl", "path": "out"}, **extra}
    return parse_pipeline(data, path=str(tmp_path / "web.yaml"))


def _run(spec, home):
    return SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home).run()


def test_second_run_delivers_only_new_items_by_date(tmp_path, home, site):
    fields = {"title": "h2 a", "link": "h2 a::attr(href)", "published": "time", "lead?": "p"}
    source = {"url": site.url("/blog/"), "item_selector": "article.post", "fields": fields,
              "date_field": "published", "date_format": ["%d %B %Y %H:%M", "%Y-%m-%d"], "timezone": "Europe/Berlin",
              "next_page": "a[rel=next]"}
    spec = _spec(tmp_path, source, incremental={"lookback": "1d"}, dead_letter={"max_ratio": 0.5})  # 2 of 5 dead

    def dated(ident, when):
        return f'<article class="post"><h2><a href="/p/{ident}">{ident}</a></h2><time>{when}</time></article>'

    site.date = "Sat, 01 Jun 2024 12:00:00 GMT"
    site.set("/blog/", Reply(page(dated("future", "01 June 2024 18:00"), dated("jun-1", "01 June 2024 09:00"),
                                  dated("may-31", "31 May 2024 09:00"), next_href="/blog/2").encode(), etag='"1"'))
    site.set("/blog/2", Reply(page(dated("may-20", "2024-05-20"), dated("bad", "yesterday"),
                                   '<article class="post"><h2>no link</h2><time>2024-05-21</time></article>').encode(),
                              etag='"2"'))
    run1 = _run(spec, home)
    assert run1.status == "succeeded" and run1.window.hi == parse_timestamp("2024-06-01T12:00:00Z")
    assert (run1.records_read, run1.dead_letter) == (3, 2)  # 'future' (after hi) waits for the next run
    out = {r["title"]: r for r in read_jsonl_dir(tmp_path / "out")}
    assert set(out) == {"jun-1", "may-31", "may-20"}
    assert out["may-31"]["published"] == "2024-05-31T07:00:00+00:00"  # Europe/Berlin -> UTC
    dead = list(read_jsonl_dir(home / "dead_letter" / "web"))
    reasons = sorted(d["error"] for d in dead)
    assert any("'yesterday' does not match source.date_format" in r for r in reasons)
    assert any("required fields 'title' ('h2 a'), 'link' ('h2 a::attr(href)') matched nothing" in r for r in reasons)

    # A day later: one new post, one backdated into the lookback (the re-read tail holds 'jun-1', already
    # delivered); 'future' is now due. Page 1 was not cached (it held 'future'); page 2 answers 304.
    site.date = "Sun, 02 Jun 2024 12:00:00 GMT"
    site.set("/blog/", Reply(page(dated("jun-2", "02 June 2024 08:00"), dated("late", "01 June 2024 10:30"),
                                  dated("future", "01 June 2024 18:00"), dated("jun-1", "01 June 2024 09:00"),
                                  dated("may-31", "31 May 2024 09:00"), next_href="/blog/2").encode(), etag='"1b"'))
    run2 = _run(spec, home)
    assert run2.window.lo == parse_timestamp("2024-05-31T12:00:00Z")  # watermark - lookback
    assert (run2.records_read, run2.dead_letter) == (3, 0)
    assert "If-None-Match" not in site.hits("/blog/")[-1][2]
    assert site.hits("/blog/2")[-1][2].get("If-None-Match") == '"2"'
    titles = sorted(r["title"] for r in read_jsonl_dir(tmp_path / "out"))
    assert titles == ["future", "jun-1", "jun-2", "late", "may-20", "may-31"]  # nothing twice

    # Nothing changed: every page answers 304, no Beam job, the watermark stays.
    run3 = _run(spec, home)
    assert run3.records_read == 0 and "unchanged" in (run3.note or "")
    assert SQLiteStateStore(home / "state.db").get_watermark("web").value == parse_timestamp("2024-06-02T12:00:00Z")


def test_second_run_without_date_field_delivers_only_unseen_items(tmp_path, home, site):
    source = {"url": site.url("/"), "item_selector": "article.post",
              "fields": {"title": "h2 a", "link": "h2 a::attr(href)"}}
    spec = _spec(tmp_path, source)
    site.set("/", page(post("1"), post("2")))
    run1 = _run(spec, home)
    assert run1.records_read == 2
    site.set("/", page(post("3"), post("1"), post("2")))  # no validators: a full GET every time
    run2 = _run(spec, home)
    assert run2.records_read == 1
    rows = list(read_jsonl_dir(tmp_path / "out"))
    assert sorted(r["title"] for r in rows) == ["Post 1", "Post 2", "Post 3"]
    assert len({r["id"] for r in rows}) == 3 and all(len(r["id"]) == 32 for r in rows)
    # The id is a stable hash of the fields: the same item keeps its id across runs.
    state = SQLiteStateStore(home / "state.db").get_watermark("web").state
    assert {r["id"] for r in rows} <= set(state["seen"])
