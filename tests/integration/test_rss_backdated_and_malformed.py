"""RSS with the defaults: backdated entries are delivered once, and malformed feeds with entries are read.

Issue 15 item 4. With ``lookback: 0`` (the default) an entry that appeared after a run but was dated
before that run's ``hi`` used to be lost: A, B, C published in that order, dated T-600 s, T-300 s and
now, delivered only A and C. The connector now remembers the guids dated within
``backdated_lookback`` (30 days by default) and delivers every new one once. A feed that feedparser
reads with ``bozo`` set but with entries (an unescaped ``&``, a CDF channel, a truncated document) is
ingested with a warning instead of failing the run; only a document with no entries fails.
"""
from __future__ import annotations

import datetime as dt
import logging

from tests.integration.test_rss import (  # noqa: F401 - fixtures used by name
    FEEDS,
    T0,
    Sync,
    _shared_server,
    clock,
    feed_server,
    ids,
    item,
    rss,
)

S = dt.timedelta(seconds=1)


def test_backdated_entries_are_delivered_once_with_the_defaults(clock, feed_server, tmp_path, home):
    a = item("A", T0 - 600 * S)
    feed_server.set("/f.xml", rss(a), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    assert ids(sync.records(sync.run())) == ["A"]

    clock.now = T0 + 60 * S
    b, c = item("B", T0 - 300 * S), item("C", T0 + 30 * S)  # B appeared after the first run, dated before it
    feed_server.set("/f.xml", rss(c, b, a), etag='"v2"')
    second = sync.run()
    assert second.window.lo == T0  # the window itself is unchanged: B comes in as a new guid
    assert ids(sync.records(second)) == ["B", "C"]

    clock.now = T0 + 120 * S
    feed_server.set("/f.xml", rss(c, b, a))  # no validators: read in full, nothing new
    assert sync.records(sync.run()) == []
    assert sorted(r["id"] for r in sync.all_records()) == ["A", "B", "C"]  # each once
    assert set(sync.watermark().state["guids"]) == {"A", "B", "C"}


def test_entries_older_than_backdated_lookback_are_not_searched_for(clock, feed_server, tmp_path, home):
    feed_server.set("/f.xml", rss(item("A", T0 - 600 * S)), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"), source={"backdated_lookback": "1h"})
    sync.run()
    clock.now = T0 + 60 * S
    feed_server.set(
        "/f.xml", rss(item("old", T0 - dt.timedelta(hours=3)), item("B", T0 - 300 * S), item("A", T0 - 600 * S)),
        etag='"v2"',
    )
    assert ids(sync.records(sync.run())) == ["B"]  # 'old' lies beyond the configured hour: documented limit


def test_a_state_from_before_guids_were_kept_does_not_redeliver(clock, feed_server, tmp_path, home):
    """Upgrading: a stored state without guids starts remembering them; nothing old comes again."""
    a = item("A", T0 - 600 * S)
    feed_server.set("/f.xml", rss(a), etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    sync.run()
    import sqlite3

    db = sqlite3.connect(home / "state.db")  # the state as an older osmosis wrote it: no guids
    (raw,) = db.execute("SELECT state FROM watermarks WHERE pipeline_id = 'news'").fetchone()
    import json

    db.execute("UPDATE watermarks SET state = ? WHERE pipeline_id = 'news'",
               (json.dumps({k: v for k, v in json.loads(raw).items() if k != "guids"}),))
    db.commit()
    db.close()
    assert "guids" not in sync.watermark().state
    clock.now = T0 + 60 * S
    feed_server.set("/f.xml", rss(item("C", T0 + 30 * S), a), etag='"v2"')
    assert ids(sync.records(sync.run())) == ["C"]
    assert [r["id"] for r in sync.all_records()].count("A") == 1


def test_an_unescaped_ampersand_is_ingested_with_a_warning(clock, feed_server, tmp_path, home, caplog):
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Amp</title>'
        "<item><guid>a</guid><title>A</title><link>http://example.org/?a=1&b=2</link>"
        "<pubDate>Sat, 01 Jun 2024 10:00:00 GMT</pubDate></item>"
        "<item><guid>b</guid><title>B</title><pubDate>Sat, 01 Jun 2024 11:00:00 GMT</pubDate></item>"
        "</channel></rss>"
    )
    feed_server.set("/f.xml", body, etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    with caplog.at_level(logging.WARNING, logger="osmosis_beam.io.rss.source"):
        records = sync.records(sync.run())
    assert ids(records) == ["a", "b"]
    assert {r["id"]: r["link"] for r in records}["a"] == "http://example.org/?a=1&b=2"
    assert "malformed" in caplog.text and "read 2 entries" in caplog.text
    assert sync.history()[0].status == "succeeded"
    # No validators are kept for a damaged document: the next run fetches it in full.
    clock.now = T0 + 60 * S
    sync.run()
    assert "If-None-Match" not in feed_server.hits("/f.xml")[-1]["headers"]


def test_a_cdf_channel_is_ingested(feed_server, tmp_path, home):
    body = (
        '<?xml version="1.0"?>\n<CHANNEL HREF="http://example.org/" LASTMOD="2024-06-01T10:00">'
        "<TITLE>CDF channel</TITLE><ABSTRACT>x</ABSTRACT>"
        '<ITEM HREF="http://example.org/a" LASTMOD="2024-06-01T10:00"><TITLE>Item A</TITLE><ABSTRACT>aa</ABSTRACT></ITEM>'
        '<ITEM HREF="http://example.org/b" LASTMOD="2024-06-01T11:00"><TITLE>Item B</TITLE><ABSTRACT>bb</ABSTRACT></ITEM>'
        "</CHANNEL>"
    )
    feed_server.set("/c.cdf", body, content_type="application/x-cdf")
    sync = Sync(tmp_path, home, feed_server.url("/c.cdf"))
    records = sync.records(sync.run())
    assert sorted((r["id"], r["title"]) for r in records) == [
        ("http://example.org/a", "Item A"), ("http://example.org/b", "Item B"),
    ]


def test_a_truncated_feed_delivers_the_complete_entries_now_and_the_rest_next_run(clock, feed_server, tmp_path, home, caplog):
    whole = (FEEDS / "rss20.xml").read_bytes()
    cut = whole[: whole.index(b"<title>Permalink guid") + 12]
    feed_server.set("/f.xml", cut, etag='"v1"')
    sync = Sync(tmp_path, home, feed_server.url("/f.xml"))
    with caplog.at_level(logging.WARNING, logger="osmosis_beam.io.rss.source"):
        first = sync.records(sync.run())
    assert "truncated" in caplog.text
    assert all(r["title"] != "Permalink guid"[:6] for r in first)  # the entry the cut went through waits

    clock.now = T0 + 60 * S
    feed_server.set("/f.xml", whole, etag='"v1"')  # the same ETag: the validators were not kept, so a full GET
    second = sync.records(sync.run())
    assert "If-None-Match" not in feed_server.hits("/f.xml")[-1]["headers"]
    everything = sorted(r["id"] for r in sync.all_records())
    assert len(everything) == 3 and len(set(everything)) == 3  # every entry once
    assert len(first) + len(second) == 3
