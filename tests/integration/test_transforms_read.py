"""The public read transforms standalone, as a Beam user composes them in a plain ``beam.Pipeline()``.

Each runs against a real server: PostgreSQL, both MongoDB-wire servers, and loopback HTTP for web and RSS.
What a Beam user relies on: ``since`` / ``until`` as aware datetimes, ISO text or integers; ``until``
defaulting to the source's clock minus the safety lag, fixed when the pipeline is built; ``.window``
readable after the build; one record (a dict) per element, or lists with ``batched=True``; a clear failure
on an unreadable record, or ``(records, dead_letters)`` with ``.with_exception_handling()``; and every
argument problem at once when the transform is constructed, worded as ``osmosis validate`` words it.
"""
from __future__ import annotations

import datetime as dt

import apache_beam as beam
import psycopg2
import pytest

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError, OsmosisError
from osmosis_beam.io import ReadFromMongoDB, ReadFromPostgres, ReadFromRSS, ReadFromWeb
from tests.integration.mongo_support import at, mongo_db  # noqa: F401  (fixture)
from tests.integration.pg_support import execute, fetch, pg_dsn, pg_module_database  # noqa: F401  (fixtures)
from tests.integration.transforms_support import Collect

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
PASSWORD = "n0t-Shown-9"


def _events(dsn: str, n: int = 10) -> None:
    """``events``: ids 1..n, ``ts`` = T0 + id hours (ids 5 and 6 tie), ``due`` a date."""
    execute(
        dsn,
        "CREATE TABLE events (id bigserial PRIMARY KEY, ts timestamptz NOT NULL, n int, due date)",
        f"INSERT INTO events (ts, n, due) SELECT '2024-01-01T00:00:00Z'::timestamptz + make_interval(hours => g), g, "
        f"'2024-02-01'::date + g FROM generate_series(1, {n}) g",
        "UPDATE events SET ts = ts - interval '1 hour' WHERE id = 6",
    )


def _run(build) -> Collect:
    out = Collect()
    with beam.Pipeline() as p:
        build(p, out)
    return out


def _validate_problems(source: dict) -> list[str]:
    """The problems ``osmosis validate`` reports for ``source`` (in a minimal pipeline)."""
    with pytest.raises(ConfigError) as info:
        parse_pipeline({"id": "x", "source": source, "sink": {"type": "jsonl", "path": "/tmp/x"}})
    return info.value.problems


# -- PostgreSQL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("since, until", [
    ("2024-01-01T03:00:00Z", "2024-01-01T08:00:00+00:00"),                   # ISO text
    (T0 + dt.timedelta(hours=3), T0 + dt.timedelta(hours=8)),                # aware datetimes
    ("2024-01-01T04:00:00+01:00", dt.datetime(2024, 1, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=1)))),  # offsets
])
def test_postgres_reads_since_until_one_dict_per_element(pg_dsn, since, until):
    _events(pg_dsn)
    read = ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="ts", since=since, until=until, splits=3)
    assert read.window is None  # nothing is asked of the server before the pipeline is built

    def build(p, out):
        p | read | out.sink("rows")
        assert read.window is not None and read.window.lo == T0 + dt.timedelta(hours=3)  # fixed at build time

    out = _run(build)
    rows = out["rows"]
    assert all(isinstance(r, dict) for r in rows)
    # [03:00, 08:00): ids 3, 4, 5 and 6 (6 was moved back to 05:00, tying with 5), 7; not 8 (ties at hi go next)
    assert sorted(r["id"] for r in rows) == [3, 4, 5, 6, 7]
    assert read.window.hi == T0 + dt.timedelta(hours=8)
    assert all(r["ts"].tzinfo is not None and read.window.lo <= r["ts"] < read.window.hi for r in rows)


def test_postgres_until_defaults_to_the_server_clock_minus_the_safety_lag(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE events (id int PRIMARY KEY, ts timestamptz NOT NULL)",
        "INSERT INTO events VALUES (1, now() - interval '1 hour'), (2, now() - interval '2 minutes'), "
        "(3, now() - interval '10 seconds'), (4, now() + interval '1 hour')",
    )
    (server_now,), = fetch(pg_dsn, "SELECT now()")
    out = Collect()
    read = ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="ts", safety_lag="1m")
    with beam.Pipeline() as p:
        p | read | out.sink("rows")
    rows = out["rows"]
    assert read.window.lo is None  # since=None reads from the start
    lag = server_now - read.window.hi
    assert dt.timedelta(seconds=59) < lag < dt.timedelta(seconds=90), lag  # the server's now() - 1m, not later
    assert sorted(r["id"] for r in rows) == [1, 2]  # 10 s ago is inside the lag; the future row is not read


def test_postgres_lookback_reads_a_tail_before_since(pg_dsn):
    _events(pg_dsn)
    read = ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="ts", since=T0 + dt.timedelta(hours=8),
                            until=T0 + dt.timedelta(hours=10), lookback="2h")
    out = _run(lambda p, out: p | read | out.sink("rows"))
    assert read.window.lo == T0 + dt.timedelta(hours=6)
    assert sorted(r["id"] for r in out["rows"]) == [7, 8, 9]


def test_postgres_integer_cursor_since_and_default_until(pg_dsn):
    _events(pg_dsn, n=12)
    read = ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="id", since=4, splits=2)
    out = _run(lambda p, out: p | read | out.sink("rows"))
    assert (read.window.lo, read.window.hi) == (4, 13)  # [since, max(id) + 1)
    assert sorted(r["id"] for r in out["rows"]) == list(range(4, 13))

    bounded = ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="id", since=2, until=5)
    out = _run(lambda p, out: p | bounded | out.sink("rows"))
    assert sorted(r["id"] for r in out["rows"]) == [2, 3, 4]


def test_postgres_batched_form_gives_lists_of_records(pg_dsn):
    _events(pg_dsn, n=50)
    read = ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="ts", until=T0 + dt.timedelta(days=5),
                            batched=True, batch_size=8, splits=1)
    out = _run(lambda p, out: p | read | out.sink("batches"))
    batches = out["batches"]
    assert all(isinstance(b, list) and 0 < len(b) <= 8 for b in batches), [len(b) for b in batches]
    assert len(batches) >= 7
    assert sorted(r["id"] for b in batches for r in b) == list(range(1, 51))


def test_postgres_empty_window_gives_no_records(pg_dsn):
    _events(pg_dsn)
    read = ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="ts", since="2030-01-01T00:00:00Z",
                            until="2030-01-02T00:00:00Z")
    out = _run(lambda p, out: p | read | out.sink("rows"))
    assert out["rows"] == []


def _unreadable(dsn: str) -> None:
    _events(dsn, n=5)
    execute(dsn, "UPDATE events SET due = '10000-01-01' WHERE id = 3")  # Python has no year 10000


def test_postgres_unreadable_record_fails_the_pipeline_clearly(pg_dsn):
    _unreadable(pg_dsn)
    read = "Read events" >> ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="ts",
                                              until=T0 + dt.timedelta(days=1))
    with pytest.raises(Exception) as info:
        with beam.Pipeline() as p:
            p | read | beam.Map(lambda r: r)
    text = str(info.value)
    assert "Read events: a record could not be read" in text
    assert "year 10000 is out of range" in text
    assert ".with_exception_handling()" in text  # says the fix


def test_postgres_with_exception_handling_returns_records_and_dead_letters(pg_dsn):
    _unreadable(pg_dsn)
    read = ReadFromPostgres(dsn=pg_dsn, table="events", cursor_field="ts", until=T0 + dt.timedelta(days=1))

    def build(p, out):
        records, dead = p | read.with_exception_handling()
        records | out.sink("rows")
        dead | out.sink("dead")

    out = _run(build)
    assert sorted(r["id"] for r in out["rows"]) == [1, 2, 4, 5]
    [letter] = out["dead"]
    assert set(letter) == {"step", "error", "record"}
    assert letter["step"] == "read: postgres" and "year 10000" in letter["error"]
    assert letter["record"]["id"] == 3 and letter["record"]["due"] == "10000-01-01"


def test_postgres_arguments_are_checked_at_construction_all_at_once_as_validate_does(pg_dsn):
    options = {"dsn": f"mysql://app:{PASSWORD}@db/shop", "fetch_size": 0, "colour": "red"}
    with pytest.raises(ConfigError) as info:
        ReadFromPostgres(**options, since="last tuesday", splits=0, lookback="soon")
    problems = info.value.problems
    expected = _validate_problems({"type": "postgres", **options})
    assert len(expected) >= 3  # colour, fetch_size, dsn (and table or query)
    assert set(expected) <= set(problems)  # the option problems, worded as `osmosis validate` words them
    assert any(p.startswith("ReadFromPostgres.since: ") for p in problems)
    assert any(p.startswith("ReadFromPostgres.splits: ") for p in problems)
    assert any(p.startswith("ReadFromPostgres.lookback: ") for p in problems)
    assert info.value.source == "ReadFromPostgres"
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value.problems)


def test_postgres_bad_password_fails_at_build_time_without_the_password(pg_server, pg_dsn):
    dsn = psycopg2.extensions.make_dsn(pg_dsn, password=PASSWORD, user="nobody_here")
    read = ReadFromPostgres(dsn=dsn, table="events", cursor_field="ts")
    with pytest.raises(OsmosisError) as info:
        with beam.Pipeline() as p:
            p | read
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value.args)
    assert "nobody_here" in str(info.value) or "authentication" in str(info.value).lower()


def test_postgres_display_data_hides_the_password(pg_dsn):
    _events(pg_dsn)
    dsn = psycopg2.extensions.make_dsn(pg_dsn, password=PASSWORD)
    read = ReadFromPostgres(dsn=dsn, table="events", cursor_field="ts", until=T0 + dt.timedelta(days=1))
    shown = repr(read.display_data())
    assert PASSWORD not in shown and "events" in shown


# -- MongoDB --------------------------------------------------------------------------------------------


def test_mongodb_reads_since_until_and_the_server_clock(mongo_db):
    mongo_db.db.events.insert_many([{"ts": at(s), "s": s} for s in range(10)])
    mongo_db.db.events.insert_one({"ts": dt.datetime(2100, 1, 1, tzinfo=UTC), "s": 100})  # after the clock
    since_text = at(2).isoformat()
    bounded = ReadFromMongoDB(uri=mongo_db.uri, database=mongo_db.name, collection="events", cursor_field="ts",
                              since=since_text, until=at(6), splits=2)
    open_ended = ReadFromMongoDB(uri=mongo_db.uri, database=mongo_db.name, collection="events",
                                 cursor_field="ts", since=at(7))

    def build(p, out):
        p | "Bounded" >> bounded | out.sink("bounded")
        p | "To now" >> open_ended | out.sink("open")

    before = dt.datetime.now(UTC)
    out = _run(build)
    assert sorted(r["s"] for r in out["bounded"]) == [2, 3, 4, 5]
    assert all(isinstance(r, dict) and isinstance(r["_id"], str) for r in out["bounded"])
    assert sorted(r["s"] for r in out["open"]) == [7, 8, 9]
    assert (bounded.window.lo, bounded.window.hi) == (at(2), at(6))
    # the server's localTime minus the default lag; the server runs on this machine's clock
    assert before - dt.timedelta(minutes=1) < open_ended.window.hi <= dt.datetime.now(UTC)


def test_mongodb_batched_and_argument_problems(mongo_db):
    mongo_db.db.events.insert_many([{"ts": at(s), "s": s} for s in range(30)])
    read = ReadFromMongoDB(uri=mongo_db.uri, database=mongo_db.name, collection="events", cursor_field="ts",
                           since=at(0), until=at(30), batched=True, batch_size=7, splits=1)
    out = _run(lambda p, out: p | read | out.sink("batches"))
    assert all(isinstance(b, list) and 0 < len(b) <= 7 for b in out["batches"])
    assert sorted(r["s"] for b in out["batches"] for r in b) == list(range(30))

    options = {"uri": f"mongodb://u:{PASSWORD}@127.0.0.1:1/", "collection": "events", "filter": "status"}
    with pytest.raises(ConfigError) as info:
        ReadFromMongoDB(**options, until="tomorrow-ish")
    expected = _validate_problems({"type": "mongodb", **options})
    assert expected and set(expected) <= set(info.value.problems)
    assert any(p.startswith("ReadFromMongoDB.until: ") for p in info.value.problems)
    assert PASSWORD not in str(info.value)


# -- RSS and web over loopback HTTP ---------------------------------------------------------------------

RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://x/</link>
<description>d</description>
<item><guid>a</guid><title>A</title><pubDate>Mon, 01 Jan 2024 10:00:00 GMT</pubDate></item>
<item><guid>b</guid><title>B</title><pubDate>Tue, 02 Jan 2024 10:00:00 GMT</pubDate></item>
<item><guid>c</guid><title>C</title><pubDate>Wed, 03 Jan 2024 10:00:00 GMT</pubDate></item>
{extra}</channel></rss>"""
BAD_ITEM = "<item><guid>bad</guid><title>Bad</title><pubDate>31 Febtember 2024 99:99</pubDate></item>"


def test_rss_reads_since_and_the_feed_servers_clock(feed_server):
    feed_server.set("/feed.xml", RSS.format(extra=""), content_type="application/rss+xml", etag='"v1"')
    read = ReadFromRSS(url=feed_server.url("/feed.xml"), cursor_field="published", since="2024-01-02T00:00:00Z")
    before = dt.datetime.now(UTC).replace(microsecond=0)
    out = _run(lambda p, out: p | read | out.sink("rows"))
    assert sorted(r["id"] for r in out["rows"]) == ["b", "c"]
    assert before - dt.timedelta(seconds=2) <= read.window.hi <= dt.datetime.now(UTC)  # the HTTP Date header
    assert read.end_state()  # the ETag and seen ids, to pass as state= next time

    again = ReadFromRSS(url=feed_server.url("/feed.xml"), cursor_field="published", since=read.window.hi,
                        state=read.end_state())
    out = _run(lambda p, out: p | again | out.sink("rows"))
    assert out["rows"] == [] and again.window.is_empty  # the feed answered 304
    assert len(feed_server.hits("/feed.xml")) == 2  # once per pipeline build, never on a worker


def test_rss_unreadable_entry_fails_by_default_and_is_a_dead_letter_when_asked(feed_server):
    feed_server.set("/feed.xml", RSS.format(extra=BAD_ITEM), content_type="application/rss+xml")
    url = feed_server.url("/feed.xml")
    with pytest.raises(Exception) as info:
        with beam.Pipeline() as p:
            p | "Read news" >> ReadFromRSS(url=url)
    assert "Read news: a record could not be read" in str(info.value) and "'bad'" in str(info.value)

    def build(p, out):
        records, dead = p | ReadFromRSS(url=url).with_exception_handling()
        records | out.sink("rows")
        dead | out.sink("dead")

    out = _run(build)
    assert sorted(r["id"] for r in out["rows"]) == ["a", "b", "c"]
    [letter] = out["dead"]
    assert letter["step"] == "read: rss" and letter["record"]["id"] == "bad"


def test_rss_argument_problems_at_once():
    with pytest.raises(ConfigError) as info:
        ReadFromRSS(url="ftp://example.org/feed", timeout="forever", max_bytes=0, since=object())
    expected = _validate_problems({"type": "rss", "url": "ftp://example.org/feed", "timeout": "forever",
                                   "max_bytes": 0})
    assert len(expected) >= 2 and set(expected) <= set(info.value.problems)
    assert any(p.startswith("ReadFromRSS.since: ") for p in info.value.problems)


PAGE = """<html><body>
<article><h2><a href="/p/1">One</a></h2><time datetime="2024-01-01T10:00:00Z"></time></article>
<article><h2><a href="/p/2">Two</a></h2><time datetime="2024-01-02T10:00:00Z"></time></article>
<article><h2><a href="/p/3">Three</a></h2><time datetime="2024-01-03T10:00:00Z"></time></article>
{extra}</body></html>"""


def _web(url: str, **kw):
    return ReadFromWeb(url=url, item_selector="article", fields={"title": "h2 a", "link": "h2 a::attr(href)",
                       "published": "time::attr(datetime)"}, date_field="published", request_interval="0s",
                       respect_robots_txt=False, **kw)


def test_web_reads_since_until_with_absolute_links(feed_server):
    feed_server.set("/news", PAGE.format(extra=""), content_type="text/html; charset=utf-8")
    read = _web(feed_server.url("/news"), since="2024-01-02T00:00:00Z", until="2024-01-03T10:00:00Z")
    out = _run(lambda p, out: p | read | out.sink("rows"))
    [row] = out["rows"]  # the third ties at hi: it belongs to the next window
    assert row["title"] == "Two" and row["link"] == feed_server.url("/p/2")
    assert (read.window.lo, read.window.hi) == (dt.datetime(2024, 1, 2, tzinfo=UTC), dt.datetime(2024, 1, 3, 10, tzinfo=UTC))


def test_web_item_missing_a_field_fails_or_is_a_dead_letter(feed_server):
    feed_server.set("/news", PAGE.format(extra="<article><h2>no link</h2></article>"),
                    content_type="text/html; charset=utf-8")
    url = feed_server.url("/news")
    with pytest.raises(Exception) as info:
        with beam.Pipeline() as p:
            p | "Read site" >> _web(url)
    assert "Read site: a record could not be read" in str(info.value)

    def build(p, out):
        records, dead = p | _web(url).with_exception_handling()
        records | out.sink("rows")
        dead | out.sink("dead")

    out = _run(build)
    assert sorted(r["title"] for r in out["rows"]) == ["One", "Three", "Two"]
    [letter] = out["dead"]
    assert letter["step"].startswith("read") and letter["error"]


def test_web_argument_problems_at_once():
    with pytest.raises(ConfigError) as info:
        ReadFromWeb(url="gopher://x", fields="title", max_pages=0, splits="many")
    expected = _validate_problems({"type": "web", "url": "gopher://x", "fields": "title", "max_pages": 0})
    assert len(expected) >= 3 and set(expected) <= set(info.value.problems)
    assert any(p.startswith("ReadFromWeb.splits: ") for p in info.value.problems)


def test_the_public_transforms_are_the_package_api():
    import osmosis_beam
    import osmosis_beam.io
    import osmosis_beam.steps

    for name in ("ReadFromPostgres", "ReadFromMongoDB", "ReadFromWeb", "ReadFromRSS",
                 "WriteToJsonl", "WriteToParquet", "WriteToPostgres", "WriteToMongoDB", "WriteResult"):
        assert name in osmosis_beam.__all__ and name in osmosis_beam.io.__all__
        assert getattr(osmosis_beam, name) is getattr(osmosis_beam.io, name)
        assert issubclass(getattr(osmosis_beam, name), beam.PTransform) or name == "WriteResult"
    for name in ("Filter", "MapFields", "Select", "Drop", "Rename", "Cast", "FlattenFields", "Explode", "Dedupe",
                 "HtmlToText", "CallPython", "StepChain", "Pipeline"):
        assert name in osmosis_beam.__all__ and name in osmosis_beam.steps.__all__
        assert issubclass(getattr(osmosis_beam.steps, name), beam.PTransform)
