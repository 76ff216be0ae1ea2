"""The RSS feed is parsed once, on the launcher: workers get the parsed entries, not the body to parse again."""
from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

from osmosis_beam.io.rss.source import RSSConnector

FEEDS = Path(__file__).parent / "feeds"
FAR = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)


def test_the_pickled_connector_carries_entries_not_the_body(feed_server):
    feed_server.set("/f.xml", (FEEDS / "rss20.xml").read_bytes())
    launcher = RSSConnector({"url": feed_server.url("/f.xml")})
    launcher.begin_run({})  # fetches and parses, on the launcher
    expected = list(launcher.read_window(None, FAR))
    assert expected

    worker = pickle.loads(pickle.dumps(launcher))
    assert worker._body is None and worker._parsed is None  # nothing left to parse
    assert worker._entry_blob is not None
    assert list(worker.read_window(None, FAR)) == expected
    # A step that changes a record on the worker does not change what a second read yields.
    for record in worker.read_window(None, FAR):
        record["title"] = "changed"
    assert list(worker.read_window(None, FAR)) == expected
    assert len(pickle.dumps(launcher)) < 4 * len(pickle.dumps([r for r in expected])) + 4096
