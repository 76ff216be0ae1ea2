"""The RSS/Atom connector end to end, against a real loopback HTTP server.

Most tests run a whole sync in-process (SyncRunner on the in-process Beam runner, SQLite state, the
JSONL sink) and read what was published; a few go through the ``osmosis`` CLI in a subprocess.
Tests about windows replace the feed server's clock (``RSSConnector.source_clock``, read on the
launcher only) with a settable one, so that they need no sleeps and do not depend on when they run.
One loopback server serves the whole module (stopping a server costs half a second); each test
gets its own path prefix on it through the ``feed_server`` fixture below.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from osmosis_beam import __version__
from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import (
    FatalConnectorError,
    RetriableConnectorError,
    RunError,
)
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.io.rss.source import RSSConnector
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.http_fixtures import FeedServer, http_date

FEEDS = Path(__file__).parent / "feeds"
UTC = dt.timezone.utc
T0 = dt.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
FAR = dt.datetime(2100, 1, 1, tzinfo=UTC)
# Retries and politeness at test speed (the defaults wait 1 s, 2 s, 4 s between retries, 1 s between requests).
FAST = {"retry_backoff": "10ms", "request_interval": "0s"}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class AnyHash:
    """Equal to the content-hash id the connector gives an entry with neither guid nor link."""

    def __eq__(self, other):
        return isinstance(other, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", other) is not None

    def __repr__(self):
        return "sha256:<64 hex>"


class Sync:
    """One pipeline (id ``news``) reading ``url`` into JSONL, with its own state store."""

    def __init__(self, tmp_path: Path, home: Path, url: str, *, source=None, incremental=None, steps=None,
                 dead_letter=None):
        self.home = home
        self.out = tmp_path / "out"
        raw = {
            "id": "news",
            "source": {"type": "rss", "url": url, **FAST, **(source or {})},
            "sink": {"type": "jsonl", "path": str(self.out)},
        }
        if dead_letter:
            raw["dead_letter"] = dead_letter
        if incremental:
            raw["incremental"] = incremental
        if steps:
            raw["steps"] = steps
        self.spec = parse_pipeline(raw, path=str(tmp_path / "news.yaml"))
        self.store = SQLiteStateStore(home / "state.db")

    def run(self, **kwargs):
        return SyncRunner(self.spec, self.store, home=self.home, **kwargs).run()

    def fail(self, **kwargs) -> str:
        with pytest.raises(RunError) as info:
            self.run(**kwargs)
        return str(info.value)

    def records(self, run) -> list[dict]:
        """What ``run`` published (in the order written)."""
        found = [d for d in self.out.iterdir() if d.name.endswith(f"-{run.run_id}")] if self.out.is_dir() else []
        assert len(found) <= 1
        return list(read_jsonl_dir(found[0])) if found else []

    def all_records(self) -> list[dict]:
        return list(read_jsonl_dir(self.out))

    def dead_letters(self) -> list[dict]:
        return list(read_jsonl_dir(self.home / "dead_letter" / "news"))

    def watermark(self):
        return self.store.get_watermark("news")

    def history(self):
        return self.store.list_runs("news")

    def published_dirs(self) -> list[str]:
        if not self.out.is_dir():
            return []
        return sorted(d.name for d in self.out.iterdir() if not d.name.startswith(("_", ".")))


def ids(records) -> list[str]:
    return sorted(r["id"] for r in records)


def rss_date(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(UTC), usegmt=True)


def rss(*items: str, title: str = "Loopback News") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://loopback.example/</link><description>d</description>"
        + "".join(items)
        + "</channel></rss>"
    )


def item(guid: str, date: dt.datetime | str | None = None, *, title: str | None = None, link: str | None = None) -> str:
    parts = [f"<title>{title or guid}</title>", f'<guid isPermaLink="false">{guid}</guid>']
    if link:
        parts.append(f"<link>{link}</link>")
    if date is not None:
        parts.append(f"<pubDate>{date if isinstance(date, str) else rss_date(date)}</pubDate>")
    return "<item>" + "".join(parts) + "</item>"


def atom(*entries: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Loopback Atom</title><id>urn:loopback</id><updated>2024-01-01T00:00:00Z</updated>"
        + "".join(entries)
        + "</feed>"
    )


def entry(entry_id: str, updated: dt.datetime, *, published: dt.datetime | None = None, title: str | None = None) -> str:
    body = f"<id>{entry_id}</id><title>{title or entry_id}</title><updated>{updated.isoformat()}</updated>"
    if published is not None:
        body += f"<published>{published.isoformat()}</published>"
    return f"<entry>{body}</entry>"


class PrefixedServer:
    """A view of a shared :class:`FeedServer` under its own path prefix (same methods)."""

    def __init__(self, server: FeedServer, prefix: str) -> None:
        self._server, self._prefix = server, prefix
        self.origin = server.url("").rstrip("/")  # scheme://host:port

    def set(self, path: str, body, **kwargs):
        return self._server.set(self._prefix + path, body, **kwargs)

    def url(self, path: str) -> str:
        return self._server.url(self._prefix + path)

    def hits(self, path: str) -> list[dict]:
        return self._server.hits(self._prefix + path)


@pytest.fixture(scope="module")
def _shared_server():
    server = FeedServer().start()
    yield server
    server.stop()


_test_numbers = itertools.count(1)


@pytest.fixture
def feed_server(_shared_server):
    return PrefixedServer(_shared_server, f"/t{next(_test_numbers)}")


@pytest.fixture
def clock(monkeypatch):
    """The feed server's clock as the connector sees it: set ``clock.now``."""
    state = SimpleNamespace(now=T0)
    monkeypatch.setattr(RSSConnector, "source_clock", lambda self: state.now)
    return state


@pytest.fixture
def no_beam(monkeypatch):
    """Makes any attempt to start a Beam job fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a Beam job was started")

    monkeypatch.setattr(SyncRunner, "run_beam", refuse)


# ---------------------------------------------------------------------------------------------
# formats and fields
# ---------------------------------------------------------------------------------------------


def _expected(name: str, origin: str, folder: str) -> list[dict]:
    """The records of feeds/NAME served at FOLDER/NAME (ORIGIN: the server's scheme://host:port)."""

    def rec(**fields):
        base = dict(id=None, title=None, link=None, summary=None, content=None, author=None, published=None,
                    updated=None, tags=[], feed_title=None, feed_url=f"{folder}/{name}")
        base.update(fields)
        return base

    if name == "rss091.xml":
        t = "Netscape-era News"
        return [
            rec(id="http://news.example.org/first.html", title="First headline", link="http://news.example.org/first.html",
                summary="The first story.", feed_title=t),
            rec(id=f"{origin}/second.html", title="Second headline", link=f"{origin}/second.html",
                summary="The second story, with a relative link.", feed_title=t),
        ]
    if name == "rss092.xml":
        t = "Userland Weblog"
        return [
            rec(id="http://weblog.example.org/2001/06/with-category", title="With a category",
                link="http://weblog.example.org/2001/06/with-category", summary="Items may carry categories in 0.92.",
                tags=["scripting", "xml"], feed_title=t),
            rec(id=AnyHash(), summary="An item with neither a title nor a link: only a description.", feed_title=t),
        ]
    if name == "rss10.rdf":
        t = "RDF Site Summary"
        return [
            rec(id="http://rdf.example.org/articles/1", title="Semantic one", link="http://rdf.example.org/articles/1",
                summary="The first RDF item.", content="<p>Full <em>text</em> of one.</p>", author="Ada Lovelace",
                updated="2024-03-01T08:30:00+00:00", tags=["semweb"], feed_title=t),
            rec(id="http://rdf.example.org/articles/2", title="Semantic two", link=f"{origin}/articles/2",
                summary="The second RDF item, with a relative link.", author="Charles Babbage",
                updated="2024-03-02T00:00:00+00:00", feed_title=t),
        ]
    if name == "rss20.xml":
        t = "Tech News Daily"
        return [
            rec(id="urn:uuid:5c3b6d0e-8f31-4a55-9b1e-0d4c1c7d1a01", title="Opaque guid", link=f"{origin}/posts/opaque",
                summary="A <b>bold</b> summary.", content="<p>The whole post.</p>",
                author="editor@tech.example.org (Grace Hopper)", published="2024-01-02T08:00:00+00:00",
                tags=["compilers", "history"], feed_title=t),
            rec(id="http://tech.example.org/posts/permalink", title="Permalink guid",
                link="http://tech.example.org/posts/permalink", summary="Second summary.", author="Alan Turing",
                published="2024-01-03T08:15:30+00:00", feed_title=t),
            rec(id=f"{folder}/posts/no-guid", title="No guid", link=f"{folder}/posts/no-guid",
                summary="The link is the id.", published="2024-01-04T17:00:00+00:00", feed_title=t),
        ]
    if name == "atom10.xml":
        t = "Atom Powered Blog"
        return [
            rec(id="urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a", title="Atom-Powered Robots Run Amok",
                link="http://atom.example.org/blog/2024/02/robots", summary="Some text.",
                content="<p>The <strong>full</strong> story.</p>", author="John Doe",
                published="2024-02-09T02:30:00+00:00", updated="2024-02-10T18:30:02+00:00", tags=["robots", "news"],
                feed_title=t),
            rec(id="tag:atom.example.org,2024:updated-only", title="Updated only",
                link="http://atom.example.org/blog/2024/02/updated-only", summary="Plain text content.",
                content="Plain text content.", updated="2024-02-08T20:00:00+00:00", feed_title=t),
        ]
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["rss091.xml", "rss092.xml", "rss10.rdf", "rss20.xml", "atom10.xml"])
def test_each_format_produces_complete_records(name, feed_server, tmp_path, home):
    path = f"/feeds/{name}"
    feed_server.set(path, (FEEDS / name).read_bytes(), content_type="application/xml")
    url = feed_server.url(path)
    sync = Sync(tmp_path, home, url)

    run = sync.run()

    expected = _expected(name, feed_server.origin, feed_server.url("/feeds"))
    got = sync.records(run)
    assert sorted(got, key=lambda r: r["title"] or "") == sorted(expected, key=lambda r: r["title"] or "")
    assert (run.status, run.records_read, run.records_written, run.dead_letter) == ("succeeded", len(expected), len(expected), 0)
    for record in got:  # timestamps in JSONL: ISO-8601 with an explicit offset
        for field in ("published", "updated"):
            if record[field] is not None:
                assert dt.datetime.fromisoformat(record[field]).utcoffset() == dt.timedelta(0)


def test_hash_ids_are_stable_across_reads(feed_server):
    """An entry with neither guid nor link gets the same content-hash id every time it is read."""
    feed_server.set("/f.xml", (FEEDS / "rss092.xml").read_bytes())

    def read():
        connector = RSSConnector({"url": feed_server.url("/f.xml")})
        connector.begin_run({})
        return ids(connector.read_window(None, FAR))

    first = read()
    assert first == read() and any(i.startswith("sha256:") for i in first)


def test_dates_are_aware_utc_datetimes_inside_the_pipeline(feed_server, tmp_path, home):
    """A map step (running inside Beam) sees aware UTC datetimes, whatever offset the feed used."""
    feed_server.set("/atom.xml", (FEEDS / "atom10.xml").read_bytes())
    check = "None if {f} is None else [isinstance({f}, datetime), str({f}.tzinfo), {f}.utcoffset() == timedelta(0)]"
    sync = Sync(
        tmp_path, home, feed_server.url("/atom.xml"),
        steps=[{"map": {"published_check": check.format(f="published"), "updated_check": check.format(f="updated")}}],
    )
    got = {r["id"]: r for r in sync.records(sync.run())}
    robots = got["urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a"]
    assert robots["published_check"] == [True, "UTC", True]  # written as +05:30 in the feed
    assert robots["updated_check"] == [True, "UTC", True]
    assert got["tag:atom.example.org,2024:updated-only"]["published_check"] is None

    # and the connector's own output, outside Beam
    connector = RSSConnector({"url": feed_server.url("/atom.xml")})
    connector.begin_run({})
    records = list(connector.read_window(None, FAR))
    assert {r["published"] for r in records} == {None, dt.datetime(2024, 2, 9, 2, 30, tzinfo=UTC)}
    assert all(r["updated"].tzinfo is UTC for r in records)


def test_relative_links_resolve_against_the_final_url_after_a_redirect(feed_server, tmp_path, home):
    feed_server.set("/new/feed.xml", rss(item("a", T0, link="posts/a"), item("b", T0, link="/top/b")))
    feed_server.set("/old.xml", b"moved", status=301, headers={"Location": feed_server.url("/new/feed.xml")})
    sync = Sync(tmp_path, home, feed_server.url("/old.xml"))
    got = {r["id"]: r for r in sync.records(sync.run())}
    assert got["a"]["link"] == feed_server.url("/new/posts/a")
    assert got["b"]["link"] == f"{feed_server.origin}/top/b"
    assert got["a"]["feed_url"] == feed_server.url("/old.xml")  # the configured URL


def test_guids_are_kept_verbatim(feed_server, tmp_path, home):
    """A guid that is not a URL is the id as written, not resolved against the feed's URL."""
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        "<item><title>x</title><guid>item-42</guid><link>/x</link></item>"
        "<item><title>y</title><guid>http://elsewhere.example/y</guid></item>"
        "</channel></rss>"
    )
    feed_server.set("/dir/f.xml", body)
    sync = Sync(tmp_path, home, feed_server.url("/dir/f.xml"))
    got = {r["title"]: r for r in sync.records(sync.run())}
    assert got["x"]["id"] == "item-42"
    assert got["x"]["link"] == f"{feed_server.origin}/x"
    assert got["y"]["id"] == got["y"]["link"] == "http://elsewhere.example/y"  # a permalink guid is the link


def test_a_gzip_encoded_response_is_read(feed_server, tmp_path, home):
    feed_server.set("/f.xml", gzip.compress((FEEDS / "rss20.xml").read_bytes()), headers={"Content-Encoding": "gzip"})
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    assert sync.run().records_written == 3


def test_an_entry_repeated_in_one_document_is_delivered_once(feed_server, tmp_path, home):
    feed_server.set("/f.xml", rss(item("a", T0), item("b"), item("a", T0), item("b")))
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    assert ids(sync.records(sync.run())) == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# HTTP behaviour
# ---------------------------------------------------------------------------------------------


def test_requests_carry_osmosis_user_agent(feed_server, tmp_path, home):
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes())
    Sync(tmp_path, home, feed_server.url("/f.xml"), source={"headers": {"X-Api-Key": "k"}}).run()
    (hit,) = feed_server.hits("/f.xml")
    assert hit["headers"]["User-Agent"].startswith(f"osmosis-beam/{__version__} ")
    assert "application/rss+xml" in hit["headers"]["Accept"]
    assert hit["headers"]["X-Api-Key"] == "k"


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
def test_an_unchanged_feed_costs_one_304_and_no_beam_job(validator, feed_server, tmp_path, home, request):
    stamp = http_date(1_700_000_000)
    kwargs = {"etag": '"v1"'} if validator == "etag" else {"last_modified": stamp}
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes(), **kwargs)
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    first = sync.run()
    assert first.records_written == 3
    mark = sync.watermark()
    assert mark.value == first.window.hi

    request.getfixturevalue("no_beam")
    second = sync.run()

    headers = feed_server.hits("/f.xml")[-1]["headers"]
    if validator == "etag":
        assert headers["If-None-Match"] == '"v1"'
    else:
        assert headers["If-Modified-Since"] == stamp
    assert (second.status, second.records_read, second.records_written) == ("succeeded", 0, 0)
    assert "not modified" in second.note
    assert second.window.lo == second.window.hi == mark.value
    assert sync.watermark().value == mark.value
    (only,) = sync.published_dirs()  # nothing new was published
    assert only.endswith(first.run_id)
    assert len(feed_server.hits("/f.xml")) == 2


def test_full_refresh_ignores_the_validators(feed_server, tmp_path, home):
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes(), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    sync.run()
    again = sync.run(full_refresh=True)
    assert "If-None-Match" not in feed_server.hits("/f.xml")[-1]["headers"]
    assert again.records_written == 3
    assert len(sync.all_records()) == 3  # a full refresh replaces the earlier output


def test_a_timeout_fails_the_run_retriably_and_keeps_the_watermark(feed_server, tmp_path, home):
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes())
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"), source={"timeout": "0.3s"})
    sync.run()
    mark = sync.watermark()

    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes(), delay=1.0)
    message = sync.fail()

    assert "timed out after 0.3s" in message and "source.timeout" in message
    latest = sync.history()[0]
    assert latest.status == "failed" and "timed out after 0.3s" in latest.error
    assert latest.finished_at is not None
    assert sync.watermark().value == mark.value and sync.watermark().state == mark.state
    assert len(sync.published_dirs()) == 1
    with pytest.raises(RetriableConnectorError) as info:
        RSSConnector({"url": feed_server.url("/f.xml"), "timeout": "0.3s", **FAST}).begin_run({})
    assert info.value.retriable


@pytest.mark.parametrize(
    "status, error, fragments",
    [
        (404, FatalConnectorError, ("404 Not Found", "check source.url")),
        (410, FatalConnectorError, ("410 Gone", "check source.url")),
        (500, RetriableConnectorError, ("500 Internal Server Error", "retry later")),
        (503, RetriableConnectorError, ("503 Service Unavailable", "retry later")),
        (None, RetriableConnectorError, ("cannot connect",)),
    ],
)
def test_http_errors_are_clear(status, error, fragments, feed_server, tmp_path, home):
    if status is None:
        url = "http://127.0.0.1:9/feed.xml"  # discard port: nothing listens
    else:
        if status != 404:
            feed_server.set("/f.xml", b"<html>oops</html>", status=status, content_type="text/html")
        url = feed_server.url("/f.xml")
    sync = Sync(tmp_path, home, url)

    message = sync.fail()

    assert all(f in message for f in fragments), message
    assert url in message
    (failed,) = sync.history()
    assert failed.status == "failed" and all(f in failed.error for f in fragments)
    assert sync.watermark().value is None and sync.published_dirs() == []
    with pytest.raises(error):
        RSSConnector({"url": url, **FAST}).begin_run({})


def test_an_oversized_feed_fails_clearly(feed_server, tmp_path, home):
    body = rss(*(item(f"entry-{i}", T0, title="x" * 200) for i in range(100)))
    assert len(body) > 20_000
    feed_server.set("/big.xml", body)
    sync = Sync(tmp_path, home, feed_server.url("/big.xml"), source={"max_bytes": 4096})
    message = sync.fail()
    assert "larger than source.max_bytes (4096 bytes)" in message
    assert sync.history()[0].status == "failed" and sync.published_dirs() == []


_TRUNCATED = (FEEDS / "rss20.xml").read_bytes()
_TRUNCATED = _TRUNCATED[: _TRUNCATED.index(b"<title>Permalink guid") + 12]


@pytest.mark.parametrize(
    "body, content_type, fragment",
    [
        (b"<!DOCTYPE html><html><head><title>Welcome</title></head><body><p>Hi<br></body></html>",
         "text/html; charset=utf-8", "not an RSS or Atom feed"),
        (b"<html><head><title>Welcome</title></head><body><p>Hi</p></body></html>", "application/xml",
         "not an RSS or Atom feed"),
        (b'<?xml version="1.0"?><config><item>1</item></config>', "application/xml", "not an RSS or Atom feed"),
        (b'{"items": []}', "application/json", "not an RSS or Atom feed"),
        (b"", "application/rss+xml", "empty"),
        (_TRUNCATED[: _TRUNCATED.index(b"<item>") + 10], "application/rss+xml", "truncated before its first entry"),
    ],
    ids=["html", "html-as-xml", "other-xml", "json", "empty", "truncated"],
)
def test_a_document_that_is_not_a_readable_feed_fails_clearly(body, content_type, fragment, feed_server, tmp_path, home):
    feed_server.set("/f.xml", body, content_type=content_type)
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))

    message = sync.fail()

    assert fragment in message and feed_server.url("/f.xml") in message, message
    assert "Traceback" not in message
    assert sync.history()[0].status == "failed"
    assert sync.watermark().value is None and sync.published_dirs() == []


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "text/plain", "application/octet-stream"])
def test_a_feed_served_with_a_wrong_content_type_is_read(content_type, feed_server):
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes(), content_type=content_type)
    connector = RSSConnector({"url": feed_server.url("/f.xml")})
    connector.begin_run({})
    assert len(list(connector.read_window(None, FAR))) == 3


def test_the_window_never_ends_after_the_launchers_clock(feed_server):
    """A feed server whose clock runs ahead must not move the watermark past what it has yet to publish."""
    ahead, behind = "Sat, 01 Jan 2100 00:00:00 GMT", "Mon, 01 Jan 2024 00:00:00 GMT"
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes())
    connector = RSSConnector({"url": feed_server.url("/f.xml")})
    connector.begin_run({})
    served = email.utils.parsedate_to_datetime(connector._headers["date"])
    assert abs(connector.source_clock() - served) < dt.timedelta(seconds=5)  # the server's Date header
    connector._headers["date"] = ahead
    assert connector.source_clock() < dt.datetime(2100, 1, 1, tzinfo=UTC)
    assert connector.source_clock() <= dt.datetime.now(UTC)
    connector._headers["date"] = behind
    assert connector.source_clock() == dt.datetime(2024, 1, 1, tzinfo=UTC)


def test_a_malformed_but_readable_feed_is_read(feed_server, tmp_path, home):
    """Real feeds use HTML entities XML does not define; the loose parser reads them."""
    body = rss(item("a", T0, title="Caf&eacute; &amp; cr&egrave;me&nbsp;br&ucirc;l&eacute;e")).encode()
    feed_server.set("/f.xml", body)
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    (record,) = sync.records(sync.run())
    assert record["title"] == "Café & crème\xa0brûlée"


# ---------------------------------------------------------------------------------------------
# incremental reads
# ---------------------------------------------------------------------------------------------


def test_a_changed_feed_delivers_exactly_the_new_entry(clock, feed_server, tmp_path, home):
    old = [item("e1", T0 - dt.timedelta(hours=2)), item("e2", T0 - dt.timedelta(hours=1))]
    feed_server.set("/f.xml", rss(*old), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    assert ids(sync.records(sync.run())) == ["e1", "e2"]

    clock.now = T0 + dt.timedelta(hours=1)
    feed_server.set("/f.xml", rss(item("e3", T0 + dt.timedelta(minutes=10)), *old), etag='"v2"')
    run = sync.run()

    assert feed_server.hits("/f.xml")[-1]["headers"]["If-None-Match"] == '"v1"'
    assert [r["id"] for r in sync.records(run)] == ["e3"]
    assert (run.window.lo, run.window.hi) == (T0, clock.now)
    assert sync.watermark().value == clock.now
    assert ids(sync.all_records()) == ["e1", "e2", "e3"]


def test_entries_without_a_date_are_delivered_exactly_once(clock, feed_server, tmp_path, home):
    feed_server.set("/f.xml", rss(item("u1"), item("u2"), item("d1", T0 - dt.timedelta(hours=1))))  # no validators
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    assert ids(sync.records(sync.run())) == ["d1", "u1", "u2"]

    clock.now = T0 + dt.timedelta(hours=1)
    assert sync.records(sync.run()) == []  # fetched in full again (200), nothing new

    clock.now = T0 + dt.timedelta(hours=2)
    feed_server.set("/f.xml", rss(item("u3"), item("u2"), item("d1", T0 - dt.timedelta(hours=1))))
    assert ids(sync.records(sync.run())) == ["u3"]
    assert ids(sync.all_records()) == ["d1", "u1", "u2", "u3"]


def test_undated_entries_are_not_lost_when_a_run_skips_beam(clock, feed_server, tmp_path, home):
    """A run whose window is empty (the server clock did not move) must not mark entries as delivered."""
    feed_server.set("/f.xml", rss(item("u1")), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    assert ids(sync.records(sync.run())) == ["u1"]

    feed_server.set("/f.xml", rss(item("u2"), item("u1")), etag='"v2"')
    skipped = sync.run()  # same server second: an empty window
    assert skipped.window.lo == skipped.window.hi and skipped.records_read == 0

    clock.now = T0 + dt.timedelta(seconds=1)
    assert ids(sync.records(sync.run())) == ["u2"]


def test_lookback_rereads_are_deduplicated_but_updates_are_delivered(clock, feed_server, tmp_path, home):
    h = dt.timedelta(hours=1)
    feed_server.set("/f.xml", atom(entry("a", T0 - 2 * h), entry("b", T0 - h)), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"), incremental={"lookback": "1d"})
    assert ids(sync.records(sync.run())) == ["a", "b"]

    clock.now = T0 + h
    changed = atom(
        entry("a", T0 - 2 * h),                                  # unchanged: re-read, not delivered
        entry("b", T0 + dt.timedelta(minutes=30), title="b v2"),  # updated: delivered again
        entry("c", T0 + dt.timedelta(minutes=20)),               # new
        entry("late", T0 - 3 * h),                               # backdated, first seen now: delivered
    )
    feed_server.set("/f.xml", changed, etag='"v2"')
    run = sync.run()
    got = sync.records(run)
    assert run.window.lo == T0 - dt.timedelta(days=1)
    assert ids(got) == ["b", "c", "late"]
    assert {r["id"]: r["title"] for r in got}["b"] == "b v2"

    clock.now = T0 + 2 * h
    feed_server.set("/f.xml", changed)  # the same document without validators: read in full (200)
    assert sync.records(sync.run()) == []


def test_entries_dated_in_the_future_wait_for_a_later_run(clock, feed_server, tmp_path, home):
    h = dt.timedelta(hours=1)
    feed_server.set("/f.xml", rss(item("past", T0 - h), item("soon", T0 + h)), etag='"v1"')  # never changes
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    assert ids(sync.records(sync.run())) == ["past"]

    clock.now = T0 + dt.timedelta(minutes=30)  # still in the future: a 304 is enough
    hits = len(feed_server.hits("/f.xml"))
    assert sync.records(sync.run()) == []
    assert len(feed_server.hits("/f.xml")) == hits + 1

    clock.now = T0 + 2 * h  # now due: the unchanged feed is read again in full
    run = sync.run()
    assert [r["id"] for r in sync.records(run)] == ["soon"]
    assert sync.watermark().value == clock.now

    clock.now = T0 + 3 * h
    assert sync.run().records_read == 0
    assert "If-None-Match" in feed_server.hits("/f.xml")[-1]["headers"]


def test_an_unparseable_date_goes_to_the_dead_letter_output(clock, feed_server, tmp_path, home):
    good = item("good", T0 - dt.timedelta(hours=1))
    feed_server.set("/f.xml", rss(good, item("bad", "the day after tomorrow")), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"), dead_letter={"max_ratio": 0.5})  # 1 of 2 is dead

    run = sync.run()

    assert [r["id"] for r in sync.records(run)] == ["good"]
    assert (run.records_read, run.dead_letter) == (1, 1)
    (letter,) = sync.dead_letters()
    assert letter["step"] == "read: rss"
    assert "unparseable date 'the day after tomorrow'" in letter["error"]
    assert letter["record"]["id"] == "bad" and letter["record"]["feed_url"] == feed_server.url("/f.xml")
    assert list((home / "dead_letter" / "news").glob(f"*-{run.run_id}/*.jsonl"))

    clock.now = T0 + dt.timedelta(hours=1)
    feed_server.set("/f.xml", rss(item("new", T0), good, item("bad", "the day after tomorrow")), etag='"v2"')
    again = sync.run()
    assert [r["id"] for r in sync.records(again)] == ["new"]
    assert again.dead_letter == 0 and len(sync.dead_letters()) == 1  # the same bad entry: reported once


# ---------------------------------------------------------------------------------------------
# encodings
# ---------------------------------------------------------------------------------------------

_CP1252 = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>Caf\u00e9 des Id\u00e9es</title>'
    "<item><title>Cr\u00e8me br\u00fbl\u00e9e \u00e0 la fran\u00e7aise \u20ac5</title><guid isPermaLink=\"false\">latin-1</guid>"
    "<description>\u00c0 bient\u00f4t, \u00a9 2024, \u00bd tasse.</description></item></channel></rss>"
).encode("cp1252")


_LATIN1 = (FEEDS / "latin1.xml").read_bytes()
_FRENCH = "Crème brûlée à la française"


@pytest.mark.parametrize(
    "body, content_type, title",
    [
        (_LATIN1, "application/rss+xml", _FRENCH),
        (_LATIN1, "text/xml", _FRENCH),  # RFC 3023 says us-ascii for text/xml without charset; the prolog wins
        (_LATIN1, "application/xml; charset=ISO-8859-1", _FRENCH),
        (_CP1252, "application/rss+xml; charset=windows-1252", _FRENCH + " €5"),
    ],
    ids=["prolog", "prolog-text-xml", "both", "content-type-charset"],
)
def test_declared_encodings_produce_unicode(body, content_type, title, feed_server):
    feed_server.set("/f.xml", body, content_type=content_type)
    connector = RSSConnector({"url": feed_server.url("/f.xml")})
    connector.begin_run({})
    (record,) = connector.read_window(None, FAR)
    assert record["title"] == title
    assert record["summary"] == "À bientôt, © 2024, ½ tasse."
    assert record["feed_title"] == "Café des Idées"
    assert record["id"] == "latin-1"


def test_a_latin1_feed_is_written_as_utf8_json(feed_server, tmp_path, home):
    feed_server.set("/f.xml", _LATIN1, content_type="application/rss+xml")
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    run = sync.run()
    (record,) = sync.records(run)
    assert (record["title"], record["feed_title"]) == (_FRENCH, "Café des Idées")
    (part,) = sync.out.rglob("part-*.jsonl")
    assert _FRENCH.encode("utf-8") in part.read_bytes()  # UTF-8 on disk, not \u escapes


# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------


def _yaml(tmp_path: Path, url: str, **source) -> Path:
    path = tmp_path / "news.yaml"
    spec = {"id": "news", "source": {"type": "rss", "url": url, **source}, "sink": {"type": "jsonl", "path": "./out"}}
    path.write_text(json.dumps(spec), encoding="utf-8")  # JSON is YAML
    return path


def test_cli_test_and_schema(feed_server, tmp_path, osmosis_cli):
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes())
    ok = osmosis_cli("test", _yaml(tmp_path, feed_server.url("/f.xml")))
    assert ok.returncode == 0, ok.stderr
    assert "rss20" in ok.stdout and "'Tech News Daily'" in ok.stdout and "3 entries" in ok.stdout

    missing = osmosis_cli("test", _yaml(tmp_path, feed_server.url("/missing.xml")))
    assert missing.returncode == 1
    assert "404 Not Found" in missing.stderr and "Traceback" not in missing.stderr

    schema = osmosis_cli("schema", _yaml(tmp_path, feed_server.url("/f.xml")))
    assert schema.returncode == 0, schema.stderr
    described = json.loads(schema.stdout)
    assert [f["name"] for f in described["fields"]] == [
        "id", "title", "link", "summary", "content", "author", "published", "updated", "tags", "feed_title", "feed_url",
    ]
    types = {f["name"]: f["type"] for f in described["fields"]}
    assert types["published"] == types["updated"] == "timestamp" and types["tags"] == "array<string>"
    assert described["cursor_field"] == "updated" and described["primary_key"] == ["id"]
    assert not any(f["nullable"] for f in described["fields"] if f["name"] in ("id", "feed_url"))


def test_cli_run_prints_the_summary_last(feed_server, tmp_path, home, osmosis_cli):
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes(), etag='"v1"')

    done = osmosis_cli("run", _yaml(tmp_path, feed_server.url("/f.xml")))

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["pipeline"] == "news"
    assert (summary["status"], summary["records_read"], summary["records_written"], summary["dead_letter"]) == (
        "succeeded", 3, 3, 0,
    )
    assert summary["window"]["lo"] is None and dt.datetime.fromisoformat(summary["window"]["hi"]).tzinfo is not None
    assert ids(read_jsonl_dir(tmp_path / "out")) == ids(_expected("rss20.xml", feed_server.origin, feed_server.url("")))
    assert SQLiteStateStore(home / "state.db").get_watermark("news").state["etag"] == '"v1"'


def test_a_changed_feed_with_nothing_new_in_the_window_runs_no_beam_job(clock, feed_server, tmp_path, home, request):
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes(), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    first = sync.run()
    clock.now = T0 + dt.timedelta(hours=1)
    assert first.records_written == 3
    # The document changes (new ETag, a new channel description) but holds no new entry.
    body = (FEEDS / "rss20.xml").read_bytes().replace(b"</channel>", b"<ttl>60</ttl></channel>")
    feed_server.set("/f.xml", body, etag='"v2"')
    request.getfixturevalue("no_beam")
    second = sync.run()
    assert (second.status, second.records_read, second.records_written) == ("succeeded", 0, 0)
    assert "empty window" in second.note
    assert sync.watermark().value == second.window.hi > first.window.hi
    assert sync.watermark().state["etag"] == '"v2"'  # the new validator is remembered
    (only,) = sync.published_dirs()
    assert only.endswith(first.run_id)
