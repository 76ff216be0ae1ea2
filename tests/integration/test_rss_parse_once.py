"""The RSS feed is parsed once, on the launcher: workers get the parsed entries (or, on the zero-decode
path, their JSON lines), never the body to parse again; and the parse itself is feedparser's, unchanged."""
from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
from pathlib import Path

import feedparser
import pytest

from osmosis_beam.core.encoding import dumps
from osmosis_beam.core.errors import FatalConnectorError
from osmosis_beam.core.records import DeadLetter, EncodedBatch
from osmosis_beam.io.rss.feed import parse_feed, replaced
from osmosis_beam.io.rss.source import RSSConnector
from osmosis_beam.config import parse_pipeline
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.integration.test_rss import item, rss

FEEDS = Path(__file__).parent / "feeds"
UTC = dt.timezone.utc
FAR = dt.datetime(2100, 1, 1, tzinfo=UTC)
T0 = dt.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _mixed_feed() -> str:
    """Entries of every kind the read tells apart: dated, undated, repeated, unparseable, tied, HTML, unicode."""
    h = dt.timedelta(hours=1)
    return rss(
        item("a", T0 - 3 * h, link="/relative/a"),
        item("b", T0 - 2 * h, title="Crème brûlée \u20ac \U0001f600 \"quoted\" <b>bold</b>"),
        item("undated"),
        item("bad", "the day after tomorrow"),
        item("a", T0 - 3 * h, link="/relative/a"),  # listed twice
        item("tie-1", T0 - h),
        item("tie-2", T0 - h),
        item("future", T0 + 5 * h),
        "<item><title>no id</title><description>&lt;p&gt;An &lt;a href='x.html'&gt;html&lt;/a&gt; summary"
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/p&gt;</description>"
        f"<pubDate>{(T0 - h).strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate>"
        "<category>one</category><category>two</category></item>",
    )


def _launcher(feed_server, body, path="/f.xml", **kwargs) -> RSSConnector:
    feed_server.set(path, body, content_type="application/rss+xml")
    launcher = RSSConnector({"url": feed_server.url(path)}, **kwargs)
    launcher.begin_run({})  # fetches and parses, on the launcher
    return launcher


def _read(connector, lo, hi, size=3):
    """What the read DoFn gets: batches of JSON lines on the zero-decode path, else records; and the dead letters."""
    out, dead = [], []
    items = connector.read_window_batches(lo, hi, size) if connector.reads_batches else connector.read_window(lo, hi)
    for item_ in items:
        if isinstance(item_, DeadLetter):
            dead.append(item_)
        elif connector.reads_batches:
            assert isinstance(item_, EncodedBatch) and item_.encoding == "json" and 0 < len(item_) <= size
            out.extend(item_.lines)
        else:
            assert isinstance(item_, dict)
            out.append(item_)
    return out, dead


def test_the_pickled_connector_carries_entries_not_the_body(feed_server):
    launcher = _launcher(feed_server, (FEEDS / "rss20.xml").read_bytes())
    assert launcher._body is None  # parsed: the body and feedparser's document are freed on the launcher too
    expected = list(launcher.read_window(None, FAR))
    assert expected

    worker = pickle.loads(pickle.dumps(launcher))
    assert worker._body is None and worker._entry_cache is None  # nothing left to parse
    assert worker._entry_blob is not None
    assert list(worker.read_window(None, FAR)) == expected
    # A step that changes a record on the worker does not change what a second read yields.
    for record in worker.read_window(None, FAR):
        record["title"] = "changed"
    assert list(worker.read_window(None, FAR)) == expected
    assert len(pickle.dumps(launcher)) < 4 * len(pickle.dumps([r for r in expected])) + 4096


@pytest.mark.parametrize("window", [(None, FAR), (T0 - dt.timedelta(hours=2), T0), (T0, FAR)], ids=["all", "past", "future"])
def test_the_zero_decode_read_gives_the_typed_reads_records_as_the_jsonl_sinks_lines(feed_server, window):
    """Both paths over one feed, on a worker: the same dead letters; each record's line is what the sink writes."""
    lo, hi = window
    typed = pickle.loads(pickle.dumps(_launcher(feed_server, _mixed_feed(), "/typed.xml")))
    assert typed.reads_batches is False
    records, typed_dead = _read(typed, lo, hi)

    launcher = _launcher(feed_server, _mixed_feed(), "/encoded.xml")
    assert launcher.use_encoding("json") is None
    worker = pickle.loads(pickle.dumps(launcher))
    assert worker._entry_cache is None and worker._lines is None  # only the blob travels
    assert worker.reads_batches is True
    encoded, encoded_dead = _read(worker, lo, hi)

    def same_url(value):  # the two feeds are served at two paths
        return value.replace("/encoded.xml", "/typed.xml") if isinstance(value, str) else value

    lines = [same_url(line) for line in encoded]
    assert lines == [same_url(dumps(r)) for r in records]
    assert [(d.step, d.error) for d in encoded_dead] == [(d.step, d.error) for d in typed_dead]
    assert [{k: same_url(v) for k, v in d.record.items()} for d in encoded_dead] == [d.record for d in typed_dead]
    if window == (None, FAR):
        assert len(lines) == 7 and len(encoded_dead) == 1  # the repeated entry once, the bad date a dead letter


def test_the_zero_decode_read_keeps_the_state_rules(feed_server):
    """Seen ids (lookback), undated ids already delivered and known guids hold on the encoded read as on the typed."""
    h = dt.timedelta(hours=1)
    body = _mixed_feed()
    state = {"seen": {f"b|{(T0 - 2 * h).isoformat()}": "x"}, "undated": ["undated", "bad"],
             "guids": {"tie-1": (T0 - h).isoformat()}}
    results = []
    for path, encoded in (("/s-typed.xml", False), ("/s-encoded.xml", True)):
        feed_server.set(path, body, content_type="application/rss+xml")
        launcher = RSSConnector({"url": feed_server.url(path)})
        launcher.begin_run(state)
        if encoded:
            assert launcher.use_encoding("json") is None
        worker = pickle.loads(pickle.dumps(launcher))
        out, dead = _read(worker, T0 - 30 * dt.timedelta(minutes=1), T0 + h)  # lo after every past entry
        lines = out if encoded else [dumps(r) for r in out]
        results.append(([line.replace(path, "") for line in lines], dead))
    (typed_lines, typed_dead), (encoded_lines, encoded_dead) = results
    assert encoded_lines == typed_lines and encoded_dead == typed_dead == []
    # b (seen in the lookback), undated and bad (delivered before), a's repeat, tie-1 (a known guid dated
    # before lo) and future (after hi) are held back; a, tie-2 and the id-less entry are new guids dated
    # before lo but within backdated_lookback: delivered, in cursor order (ties in the feed's order).
    delivered = [json.loads(line)["id"] for line in encoded_lines]
    assert delivered[:2] == ["a", "tie-2"] and delivered[2].startswith("sha256:") and len(delivered) == 3


def test_field_steps_and_other_encodings_keep_the_read_typed(feed_server):
    launcher = _launcher(feed_server, _mixed_feed())
    assert "field steps" in launcher.use_encoding("json", fields=(("select", {"fields": ["id"]}),))
    assert "cannot encode 'pgcopy'" in launcher.use_encoding("pgcopy")
    assert launcher.use_encoding(None) is None
    worker = pickle.loads(pickle.dumps(launcher))
    assert worker.reads_batches is False
    records, _ = _read(worker, None, FAR)
    assert records and all(isinstance(r, dict) for r in records)
    with pytest.raises(FatalConnectorError, match="zero-decode read"):
        next(iter(worker.read_window_batches(None, FAR, 10)))


def _pipeline_output(base: Path, url: str, read: dict | None):
    home = base / "home"
    home.mkdir(parents=True)
    raw = {"id": "news", "source": {"type": "rss", "url": url}, "sink": {"type": "jsonl", "path": str(base / "out")},
           "dead_letter": {"max_ratio": 0.5}}
    if read:
        raw["read"] = read
    run = SyncRunner(parse_pipeline(raw, path=str(base / "news.yaml")), SQLiteStateStore(home / "state.db"), home=home).run()
    (folder,) = [d for d in (base / "out").iterdir() if d.name.endswith(f"-{run.run_id}")]
    text = b"".join(p.read_bytes() for p in sorted(folder.glob("*.jsonl")))
    return run, text, list(read_jsonl_dir(home / "dead_letter" / "news"))


def test_a_run_writes_the_same_bytes_on_both_paths_and_says_which_ran(feed_server, tmp_path, caplog):
    """The pipeline as it is (zero-decode) and with ``read.path: typed``: the same file, counts, dead letters."""
    feed_server.set("/run.xml", _mixed_feed(), content_type="application/rss+xml")
    url = feed_server.url("/run.xml")
    with caplog.at_level(logging.INFO, logger="osmosis_beam.sync.graph"):
        fast, fast_text, fast_dead = _pipeline_output(tmp_path / "fast", url, None)
    assert "zero-decode json path" in caplog.text and "the rss source writes json" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="osmosis_beam.sync.graph"):
        typed, typed_text, typed_dead = _pipeline_output(tmp_path / "typed", url, {"path": "typed"})
    assert "typed path (read.path is typed)" in caplog.text
    assert fast_text == typed_text and fast_text.count(b"\n") == 7  # a first run: every entry but the bad date
    assert (fast.records_read, fast.records_written, fast.dead_letter) == (typed.records_read, typed.records_written, typed.dead_letter)
    assert [(d["step"], d["error"], d["record"]) for d in fast_dead] == [(d["step"], d["error"], d["record"]) for d in typed_dead]


_RELATIVE = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xml:base="http://base.example/dir/"'
    ' xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
    "<title>Relative</title><link>../home</link><description>d</description>"
    "<item><title>t</title><link>item/1</link><guid>2</guid><comments>c?x=1</comments>"
    "<description>&lt;a href=\"rel/x.html\"&gt;x&lt;/a&gt; &lt;img src=\"/i.png\"&gt;</description></item>"
    '<item xml:base="http://other.example/a/b/"><title>t2</title><link>../up</link><guid isPermaLink="false">k</guid>'
    "<enclosure url=\"media/e.mp3\" length=\"1\" type=\"audio/mpeg\"/></item>"
    # Text the HTML passes get without markup, and with: whitespace, CR LF (from character references),
    # '>' alone, unicode, an entity-escaped tag, CDATA markup, a script, an empty value.
    "<item><title>  spaced  </title><guid>p1</guid><description>  plain text &#13;&#10;two lines  &#13;&#10; </description>"
    "<content:encoded><![CDATA[ a > b, caf\u00e9 \U0001f600 ]]></content:encoded></item>"
    "<item><guid>p2</guid><description>1 &amp;lt; 2 &amp;amp; x</description>"
    "<content:encoded><![CDATA[<p onclick='x()'>hi<script>alert(1)</script><br/></p>&copy;]]></content:encoded></item>"
    "<item><guid>p3</guid><description></description><content:encoded><![CDATA[<![CDATA[x]]]]><![CDATA[>]]></content:encoded></item>"
    "</channel></rss>"
)
_ATOM_TEXTS = (
    '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" xml:base="http://atom.example/x/">'
    "<title type=\"html\">  A &amp;amp; B  </title><id>urn:f</id><updated>2024-01-01T00:00:00Z</updated>"
    "<entry><id>e1</id><title type=\"text\">plain  </title><updated>2024-01-01T00:00:00Z</updated>"
    "<summary type=\"html\">no markup at all\r\n  </summary>"
    "<content type=\"xhtml\"><div xmlns=\"http://www.w3.org/1999/xhtml\">  only text  </div></content></entry>"
    "<entry><id>e2</id><updated>2024-01-01T00:00:00Z</updated><summary type=\"html\">&lt;a href=\"r\"&gt;r&lt;/a&gt;</summary>"
    "<content type=\"html\">   </content></entry>"
    "</feed>"
)


# What the FeedParserDict and deepcopy shortcuts see: every alias key (description, guid, date, issued,
# modified, copyright, tagline, url), category and enclosures, an Atom source (feedparser deep-copies its data),
# base64 and escaped Atom 0.3 content, xhtml titles, xml:lang, namespaced elements, a repeated title and link.
_ALIASES = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<feed version="0.3" xmlns="http://purl.org/atom/ns#" xmlns:dc="http://purl.org/dc/elements/1.1/" xml:lang="fr_CA">'
    "<title mode=\"escaped\" type=\"text/html\">T &amp;lt;b&amp;gt;</title><tagline>tag</tagline>"
    "<copyright>(c)</copyright><modified>2024-01-02T00:00:00Z</modified><id>urn:f</id>"
    '<entry xml:lang="de"><id>urn:1</id><title>one</title><issued>2024-01-01T00:00:00Z</issued>'
    "<modified>2024-01-03T00:00:00Z</modified><dc:subject>subj</dc:subject>"
    '<content type="text/plain" mode="base64">aGVsbG8gPGI+d29ybGQ8L2I+</content>'
    '<summary type="text/html" mode="escaped">&lt;p&gt;s&lt;/p&gt;</summary>'
    '<link rel="enclosure" href="e.mp3" type="audio/mpeg" length="3"/><link rel="license" href="/l"/>'
    '<link rel="alternate" href="/a"/><link rel="alternate" href="/b"/></entry>'
    "</feed>"
).encode()
_SOURCED = (
    '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
    "<title>S</title><id>urn:s</id><updated>2024-01-01T00:00:00Z</updated>"
    '<entry><id>urn:e</id><title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><b>x</b> y</div></title>'
    "<updated>2024-01-01T00:00:00Z</updated><published>2023-12-31T00:00:00Z</published>"
    '<source><id>urn:src</id><title type="html">&lt;i&gt;src&lt;/i&gt;</title><updated>2024-01-01T00:00:00Z</updated>'
    '<author><name>a</name><email>a@x</email></author><link href="/src"/></source>'
    '<category term="c1" scheme="s" label="L"/><category term="c2"/><rights type="html">&amp;copy;</rights>'
    '<content type="text">  text   </content><author><name>b</name><uri>/b</uri></author></entry>'
    "</feed>"
).encode()
_RSS_ALIASES = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ' xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
    "<title>R</title><link>http://r.example/</link><description>d &amp; e</description><dc:date>2024-01-01T00:00:00Z</dc:date>"
    "<image><url>/i.png</url><title>img</title><link>/</link></image><itunes:category text=\"Tech\"/>"
    "<item><title>a</title><title>second title</title><link>/x?a=1&amp;b=2</link><link>/y</link>"
    '<guid isPermaLink="true">/g</guid><description>plain</description><dc:date>2024-01-01T01:00:00Z</dc:date>'
    "<category domain=\"d\">k1</category><category>k2</category><enclosure url=\"/m.mp3\" length=\"9\" type=\"audio/mpeg\"/>"
    '<media:content url="/v.mp4" type="video/mp4"/><itunes:duration>1:00</itunes:duration>'
    "<source url=\"http://s.example/rss\">Src</source><comments>/c</comments><author>me@x (Me)</author></item>"
    "<item><description><![CDATA[<b>bold</b> & <a href='/r'>r</a>]]></description><pubDate>Sat, 01 Jun 2024 12:00:00 +0200</pubDate></item>"
    "</channel></rss>"
).encode()


def _typed(value):
    """A value with the type of every container and leaf in it, for comparisons that == would blur."""
    if isinstance(value, dict):
        return (type(value).__name__, [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_typed(v) for v in value])
    return (type(value).__name__, value)


@pytest.mark.parametrize("name", ["rss091.xml", "rss092.xml", "rss10.rdf", "rss20.xml", "atom10.xml", "latin1.xml",
                                  "relative", "atom-texts", "bench", "aliases", "sourced", "rss-aliases"])
@pytest.mark.parametrize("base", ["http://127.0.0.1:8080/feeds/f.xml", None])
def test_parse_feed_parses_exactly_as_feedparser(name, base, monkeypatch):
    """parse_feed is feedparser.parse: the same feed, the same entries, value for value (with and without a base)."""
    from bench.routes import _feed

    bodies = {"relative": _RELATIVE.encode(), "atom-texts": _ATOM_TEXTS.encode(), "bench": _feed(50),
              "aliases": _ALIASES, "sourced": _SOURCED, "rss-aliases": _RSS_ALIASES}
    body = bodies[name] if name in bodies else (FEEDS / name).read_bytes()
    headers = {"content-type": "application/rss+xml"}
    if base:
        headers["content-location"] = base
    ours = parse_feed(body, dict(headers))
    ours_again = parse_feed(body, dict(headers))  # with the cache warm
    from feedparser import mixin, urls
    from feedparser.util import FeedParserDict

    # The replacements are in place; feedparser's own functions sit behind them.
    installed = replaced()
    expected = {(urls, "_urljoin"), (mixin, "_urljoin"), (mixin, "resolve_relative_uris"), (mixin, "_sanitize_html"),
                (mixin, "copy"), *((FeedParserDict, m) for m in ("get", "__contains__", "setdefault", "__getitem__"))}
    assert set(installed) == expected
    for owner, attr in installed:
        monkeypatch.setattr(owner, attr, getattr(owner, attr).__wrapped__)
    theirs = feedparser.parse(body, response_headers=dict(headers))
    assert ours.entries and ours.entries == theirs.entries == ours_again.entries
    assert _typed(ours.entries) == _typed(theirs.entries) == _typed(ours_again.entries)
    assert _typed(ours.feed) == _typed(theirs.feed) and ours.version == theirs.version and ours.bozo == theirs.bozo
    assert [_typed(getattr(e, "source", None)) for e in ours.entries] == [_typed(getattr(e, "source", None)) for e in theirs.entries]
    if name == "relative" and base:
        assert ours.entries[1].link == "http://other.example/a/up"
        assert 'href="http://base.example/dir/rel/x.html"' in ours.entries[0].summary
        assert ours.entries[2].summary == "plain text \ntwo lines"  # the sanitizer strips, and writes CR LF as LF
        assert "<script" not in ours.entries[3].content[0].value


def test_the_feedparserdict_shortcuts_answer_as_feedparser_for_every_kind_of_key():
    """get / in / setdefault / [] and the contentparams deepcopy: the same answers (or errors) as feedparser's own."""
    import copy
    import warnings

    from feedparser import mixin
    from feedparser.util import FeedParserDict

    replaced()  # installed
    def entry():
        return FeedParserDict(published="p", published_parsed=(2024,), summary="s", tags=[FeedParserDict(term="t")],
                              links=[FeedParserDict(rel="enclosure", href="/e"), FeedParserDict(rel="license", href="/l")],
                              id="i", plain="x", rights="r")

    sub_class = type("Sub", (FeedParserDict,), {"__getitem__": lambda self, key: "sub"})
    keys = ["plain", "missing", "guid", "description", "category", "enclosures", "license", "updated", "updated_parsed",
            "date", "copyright", "url", "id", "summary", ["unhashable"], 7, None]

    def answer(method, make, key):
        target = make()  # a fresh one for each call: setdefault changes it
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                args = (key, "dflt") if method.__name__ in ("get", "setdefault") else (key,)
                return "ok", method(target, *args), dict.copy(target), [type(w.message) for w in caught]
        except Exception as exc:  # noqa: BLE001 - the kind of error is part of the answer
            return "error", type(exc)

    for make in (entry, lambda: sub_class(plain="x"), FeedParserDict):
        for key in keys:
            for name in ("get", "__contains__", "__getitem__", "setdefault"):
                ours = getattr(FeedParserDict, name)
                assert hasattr(ours, "__wrapped__")
                assert answer(ours, make, key) == answer(ours.__wrapped__, make, key), (name, key)

    # deepcopy: the parser's contentparams (strings), and what must go to copy.deepcopy (aliases, containers, attributes).
    odd = FeedParserDict(type="text/html"); odd.extra = 1
    for value in (FeedParserDict(type="text/html", language=None, base="http://b/"), FeedParserDict(description="d"),
                  FeedParserDict(type=["list"]), FeedParserDict({1: "int key"}), odd, {"type": "plain dict"}):
        ours, theirs = mixin.copy.deepcopy(value), copy.deepcopy(value)
        assert ours is not value and type(ours) is type(theirs) and _typed(ours) == _typed(theirs)
        assert vars(ours) == vars(theirs) if hasattr(theirs, "__dict__") else True


def test_the_collector_is_paused_for_the_parse_only_and_left_as_it_was(monkeypatch):
    import gc

    from osmosis_beam.io.rss.feed import collector_paused
    from bench.routes import _feed

    assert gc.isenabled()
    during = []
    plain_parse = feedparser.parse

    def parse(*args, **kwargs):
        during.append(gc.isenabled())
        return plain_parse(*args, **kwargs)

    monkeypatch.setattr(feedparser, "parse", parse)
    parsed = parse_feed(_feed(2000), {"content-type": "application/rss+xml"})
    assert len(parsed.entries) == 2000
    assert during == [False] and gc.isenabled()  # off while feedparser parsed, on again after
    with pytest.raises(RuntimeError):
        with collector_paused():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()  # on again, after an error too
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()
