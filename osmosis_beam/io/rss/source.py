"""The RSS/Atom connector: feedparser over the shared HTTP client, incremental on entry dates.

Reads RSS 0.9x, 1.0, 2.0, Atom and CDF. The launcher fetches the feed once per run through
:mod:`osmosis_beam.io.http.client` (retries honouring ``Retry-After``, a total ``deadline``, size caps,
redirects by hand, URL credentials sent to their origin only) with a conditional GET
(ETag / Last-Modified remembered per feed), so an unchanged feed costs one ``304`` and no Beam job,
and parses it before the Beam job starts, so a document that is not a readable feed fails the run
with a clear message. The workers get the parsed entries as one compressed blob (never the body): the
records, or, on the zero-decode path (no steps, a ``jsonl`` sink), each entry's JSON line, encoded once by
the sink's own encoder. Entries are windowed on ``updated`` (or ``published``; see
``incremental.cursor_field``; an entry without the one falls back to the other); entries without a
date are delivered exactly once (their ids are remembered while they stay in the feed); with a
``lookback`` the entries re-read are deduplicated by id and date, while an entry whose date changed
is delivered again. Entries dated at or after the window's ``hi`` wait for a later run: while such
entries are due, an unchanged feed (``304``) is fetched again in full so that they are delivered.
A new guid dated before the window (but within ``backdated_lookback``) is delivered once: the guids
dated within it are kept in the state. A malformed feed with entries is read with a warning.

Records: ``id`` is the entry's guid / Atom id as written, else its link, else a hash of its
content; ``link`` is made absolute against the feed's final URL (after redirects) or ``xml:base``;
``published`` and ``updated`` are UTC-aware datetimes of the entry's own dates (RSS 2.0's
``pubDate`` is ``published``; ``updated`` is None when the feed gives no update date).

Example (pipeline YAML)::

    source:
      type: rss
      url: https://example.org/feed.xml
      timeout: 30s
"""
from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import logging
import pickle
import xml.sax
import zlib
from typing import Any, Iterator
from urllib.parse import urlsplit

from osmosis_beam.core.errors import FatalConnectorError, RetriableConnectorError
from osmosis_beam.core.options import Option
from osmosis_beam.core.secrets import redact_url
from osmosis_beam.core.encoding import dumps_bytes
from osmosis_beam.core.records import DeadLetter, EncodedBatch, Record
from osmosis_beam.core.timefmt import UTC, parse_http_date, parse_timestamp, utcnow
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.io.http.client import HttpClient
from osmosis_beam.io.http.options import default_user_agent, http_options, public_http_options
from osmosis_beam.io.http.urls import origin, split_credentials
from osmosis_beam.io.rss.feed import collector_paused, parse_feed

__all__ = ["RSSConnector"]

log = logging.getLogger(__name__)
USER_AGENT = default_user_agent("RSS/Atom reader")
_ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.8, "
           "*/*;q=0.1")
_FIELDS = (
    ("id", "string"), ("title", "string"), ("link", "string"), ("summary", "string"), ("content", "string"),
    ("author", "string"), ("published", "timestamp"), ("updated", "timestamp"), ("tags", "array<string>"),
    ("feed_title", "string"), ("feed_url", "string"),
)


def _struct_to_dt(value) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromtimestamp(calendar.timegm(value), tz=UTC)


_http_date = parse_http_date


# What expat reports when the document ends before its root element is closed.
_TRUNCATION_ERRORS = ("no element found", "unclosed token", "unclosed cdata section", "partial character")


def _is_truncated(exc: BaseException | None) -> bool:
    return isinstance(exc, xml.sax.SAXParseException) and any(m in str(exc).lower() for m in _TRUNCATION_ERRORS)


class RSSConnector(BaseConnector):
    """RSS 0.9x/1.0/2.0 and Atom feeds over HTTP, with conditional GET."""

    type_name = "rss"
    splittable = False  # one feed is one document: it cannot be read in parts
    cursor_fields = ("updated", "published")
    options = (
        Option("url", required=True, help="the feed's http(s) URL"),
        # Feed readers fetch on their user's behalf and do not read robots.txt (neither do the big ones);
        # respect_robots_txt: true makes this one do so.
        Option("backdated_lookback", "duration", default=dt.timedelta(days=30),
               help="an entry dated up to this long before the window is still delivered when its guid is new"),
        *http_options(user_agent=USER_AGENT, max_bytes=50 * 1024 * 1024, respect_robots_txt=False),
    )

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[str]:
        url = values.get("url")
        if isinstance(url, str) and not url.lower().startswith(("http://", "https://")):
            return [f"url: {url!r} is not an http(s) URL"]
        return []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._body: bytes | None = None
        self._status: int | None = None
        self._headers: dict[str, str] = {}
        # Credentials in the URL (https://user:pw@host/feed) are sent to that origin only, as Basic auth;
        # every URL in records, state, logs and errors is the public one, secret query values as ***.
        self._fetch_url, creds = split_credentials(self.config["url"])
        self._credentials = {origin(self._fetch_url): creds} if creds else {}
        self._public_url = redact_url(self._fetch_url)
        self._base: str = self._fetch_url  # the URL the feed came from, after redirects (relative links resolve against it)
        self._state: dict[str, Any] = {}
        self._feed_info: tuple[str, str | None, int] | None = None  # (version, title, entries) of the parsed feed
        self._malformed = False  # feedparser read the entries of a malformed document (bozo)
        self._cut = False  # ... of a truncated one: its last entry may be incomplete
        # The parsed entries: (record, cursor, problem) each. feedparser's document is dropped as soon as
        # they are built (it holds several times their size).
        self._entry_cache: list[tuple[Record, dt.datetime | None, str | None]] | None = None
        self._encoding: str | None = None  # "json": the read yields the entries as JSON lines (zero-decode)
        self._lines: list[str] | None = None  # each entry's JSON line (encoding "json")
        self._meta: list[tuple[str, dt.datetime | None, str | None]] | None = None  # (id, cursor, problem) each
        self._problem_records: dict[int, Record] = {}  # on a worker, encoding "json": the records of dead letters
        self._entry_blob: bytes | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers get the parsed entries, never the body to parse again; credentials and headers stay home.
        state = super().__getstate__()
        if self._entry_cache is not None or self._entry_blob is not None:
            # They travel as one blob from the C pickler: Beam pickles a DoFn with a pure-Python pickler,
            # several times while it builds the job, which costs seconds for thousands of entry dicts. On the
            # zero-decode path the blob holds each entry's JSON line instead of its record.
            if self._entry_blob is None:
                # Compressed once here (fast): Beam compresses every pickled DoFn again, at level 9.
                self._entry_blob = zlib.compress(pickle.dumps(self._payload(), protocol=pickle.HIGHEST_PROTOCOL), 1)
            state["_entry_blob"] = self._entry_blob
            state["_entry_cache"] = None
            state["_lines"] = None
            state["_meta"] = None
        state["_body"] = None
        state["_credentials"] = {}
        state["config"] = public_http_options(state["config"], drop_headers=True)
        state["_fetch_url"] = self._public_url  # workers never fetch
        state["_base"] = redact_url(self._base)  # links resolve the same: a query is never part of a join
        return state

    def _payload(self) -> tuple:
        """What the blob carries: the records (typed), or the JSON lines and, for dead letters, the records."""
        if self._encoding == "json":
            entries = self._entries()
            problems = {i: rec for i, (rec, _, problem) in enumerate(entries) if problem}
            return ("json", self._entry_meta(), self._lines, problems)
        return ("typed", self._entries())

    def _unpack(self) -> None:
        """On a worker: the entries (or lines) from the blob the launcher pickled."""
        payload = pickle.loads(zlib.decompress(self._entry_blob))
        if payload[0] == "json":
            _, self._meta, self._lines, self._problem_records = payload
            self._encoding = "json"
        else:
            self._entry_cache = payload[1]
            self._encoding = None

    def display(self) -> dict[str, Any]:
        """The options for logs and display data: URL credentials and secret-looking headers as ``***``."""
        return public_http_options(super().display())

    @property
    def url(self) -> str:
        """The feed's public URL: no user:password@, secret query values as ``***``."""
        return self._public_url

    # -- HTTP ---------------------------------------------------------------------------
    @property
    def _http(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(
                self.config, what="rss", accept=_ACCEPT, credentials=self._credentials, default_hint="check source.url",
                hints={401: "the feed needs credentials (user:password@ in source.url, or source.headers); check source.url",
                       403: "the server refuses access; check source.url and source.user_agent"},
            )
        return self._client

    def disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _fetch(self, conditional: dict[str, Any] | None) -> None:
        try:
            resp = self._http.get(self._fetch_url, conditional)
        finally:
            self.disconnect()  # one document per run: no connection is kept open between runs
        if resp.status == 304 and not conditional:
            raise FatalConnectorError(f"rss {self.url}: the server answered 304 Not Modified to a plain GET")
        self._status = resp.status
        self._headers = dict(resp.headers)
        self._base = resp.url or self._fetch_url
        self._body = None if resp.status == 304 else resp.body
        self._feed_info = None
        self._entry_cache = None
        self._meta = None
        self._lines = None
        self._entry_blob = None

    # -- sync hooks ------------------------------------------------------------------------------
    def begin_run(self, state) -> None:
        self._state = dict(state or {})
        self._fetch(self._state)
        if self._status == 304 and self._pending_due():
            # The document is unchanged, but entries it holds were dated after the last window's hi
            # and are due now: a 304 would hold them back for as long as the feed does not change.
            log.info("rss %s: not modified, but entries held back for their future date are due; reading it again", self.url)
            self._fetch(None)
        if self._status != 304:
            self._parse()  # fail here, on the launcher, with a clear message rather than inside the Beam job

    def _pending_due(self) -> bool:
        pending = self._state.get("pending")
        if not pending:
            return False
        try:
            due = parse_timestamp(pending)
        except ValueError:
            return True
        lag = self.incremental.safety_lag if self.incremental.safety_lag is not None else self.default_safety_lag
        return due < self.source_clock() - lag

    def unchanged(self) -> bool:
        return self._status == 304

    def source_clock(self) -> dt.datetime:
        """The feed server's clock (its ``Date`` header), but never later than the launcher's.

        A server whose clock runs ahead would otherwise move the watermark past entries it has not
        published yet; the earlier of the two clocks can only hold entries back until a later run.
        """
        now = utcnow()
        server = _http_date(self._headers.get("date"))
        return min(server, now) if server is not None else now

    def window_is_empty(self, window: SyncWindow) -> bool:
        """The feed is already parsed on the launcher: a window with nothing new needs no Beam job."""
        for _ in self._select(window.lo, window.hi):
            return False  # a record, or a dead letter to write
        return True

    def end_state(self, window: SyncWindow) -> dict[str, Any] | None:
        if window.lo is not None and window.is_empty:
            # The runner skips the read for an empty window: nothing was delivered, so keep the state of
            # the last read (its validators too, so that the next run fetches the document in full).
            return None
        seen: dict[str, str] = {}
        undated: set[str] = set()
        future: list[dt.datetime] = []
        lookback = self.incremental.lookback
        horizon = self._guid_horizon(window.hi)
        if self._cut:  # remember every guid read, however old: the next run looks for the ones after the cut
            horizon = dt.datetime.min.replace(tzinfo=UTC)
        guids = self._known_guids(horizon)
        for entry_id, cursor, problem in self._entry_meta():
            if cursor is None or problem:
                undated.add(entry_id)
            elif cursor >= window.hi:
                future.append(cursor)
            else:
                if lookback and window.hi - lookback <= cursor:
                    seen[_key(entry_id, cursor)] = cursor.isoformat()
                if horizon is not None and cursor >= horizon:
                    guids[entry_id] = max(cursor.isoformat(), guids.get(entry_id, ""))
        # A malformed document was read as well as it could be: keep no validators, so that the next run
        # fetches it in full (a 304 would otherwise hide what the damaged copy lacked).
        keep = not self._malformed
        return {
            "etag": (self._headers.get("etag") or self._state.get("etag")) if keep else None,
            "last_modified": (self._headers.get("last-modified") or self._state.get("last_modified")) if keep else None,
            "seen": seen,
            "undated": sorted(undated),
            "pending": min(future).isoformat() if future else None,
            "guids": dict(sorted(guids.items())),
            "rescan_from": (window.lo.isoformat() if isinstance(window.lo, dt.datetime) else "start") if self._cut else None,
        }

    def _guid_horizon(self, hi: dt.datetime) -> dt.datetime | None:
        """The oldest entry date whose guid is remembered and looked for (None: backdated entries are not).

        After a truncated document the horizon reaches back to the start of that run's window (or to
        the beginning): the entries after the cut were never seen, and may be old.
        """
        span = self.config["backdated_lookback"]
        horizon = hi - span if span else None
        rescan = self._state.get("rescan_from")
        if rescan:
            start = dt.datetime.min.replace(tzinfo=UTC) if rescan == "start" else parse_timestamp(rescan)
            horizon = start if horizon is None else min(horizon, start)
        return horizon

    def _known_guids(self, horizon: dt.datetime | None) -> dict[str, str]:
        """The guids remembered from earlier runs whose entry date is still inside the horizon."""
        if horizon is None:
            return {}
        kept = {}
        for guid, when in (self._state.get("guids") or {}).items():
            try:
                if parse_timestamp(when) >= horizon:
                    kept[guid] = when
            except ValueError:
                continue
        return kept

    # -- parsing -------------------------------------------------------------------------------------
    def _parse(self) -> None:
        """Parse the fetched body into the entries (once); feedparser's document is dropped right after."""
        if self._entry_cache is not None or self._entry_blob is not None:
            return
        import feedparser

        if self._body is None:
            raise FatalConnectorError(f"rss {self.url}: no feed was fetched (begin_run was not called)")
        content_type = self._headers.get("content-type")
        if not self._body.strip():
            raise FatalConnectorError(
                f"rss {self.url}: the server sent an empty document (HTTP {self._status}, "
                f"Content-Type {content_type or 'missing'}); check source.url"
            )
        headers = {"content-location": self._base}
        if content_type:
            headers["content-type"] = content_type
        parsed = parse_feed(self._body, headers)
        problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
        if isinstance(problem, feedparser.CharacterEncodingOverride):
            problem = None  # the HTTP charset and the document disagree; feedparser took the right one
        entries = parsed.entries
        # feedparser names every RSS/Atom flavour it recognises. An unnamed document (CDF, a feed whose
        # root is unusual) counts as a feed when its entries look like entries: any XML with <item>
        # elements has "entries", but only a feed's have titles or links.
        looks_like_feed = bool(entries) and (
            bool(parsed.feed.get("title")) or any(e.get("title") or e.get("link") for e in entries)
        )
        if not parsed.get("version") and not looks_like_feed:
            start = self._body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
            raise FatalConnectorError(
                f"rss {self.url}: the document is not an RSS or Atom feed (Content-Type {content_type or 'missing'}, "
                f"starts with {start!r}{f'; {problem}' if problem else ''}); check source.url"
            )
        if problem is not None and (not entries or (len(entries) == 1 and _is_truncated(problem))):
            if _is_truncated(problem):  # nothing complete before the cut
                raise RetriableConnectorError(
                    f"rss {self.url}: the feed document is truncated before its first entry ends ({problem}); the server "
                    "sent an incomplete feed, retry later"
                )
            raise FatalConnectorError(f"rss {self.url}: not a readable RSS or Atom feed ({problem})")
        self._malformed = problem is not None
        self._cut = _is_truncated(problem)
        if self._cut:
            # The entries before the cut are read; the one the cut went through may be incomplete and waits
            # for a complete document. The validators are not kept, so the next run fetches it in full, and
            # entries after the cut (older ones, in a feed listed newest first) come in as backdated guids.
            log.warning(
                "rss %s: the feed document is truncated (%s); reading the %d complete entries before the cut, "
                "the rest at the next run", self.url, problem, max(0, len(entries) - 1),
            )
        elif problem is not None:
            log.warning(
                "rss %s: the feed is malformed (%s) but feedparser read %d entries from it; ingesting them. "
                "Ask the feed's publisher to fix it (https://validator.w3.org/feed/)", self.url, problem, len(entries),
            )
        ids = self._verbatim_ids(parsed, content_type)
        self._feed_info = (parsed.get("version") or "", parsed.feed.get("title"), len(entries))
        with collector_paused():  # 20,000 records of a dozen objects each: no cycle among them
            self._entry_cache = self._build_entries(parsed, ids)
        self._body = None  # parsed: what the run needs is in the entries (the document and the body are freed)

    def _verbatim_ids(self, parsed, content_type: str | None) -> list[Any] | None:
        """The entries' ids as written, where feedparser resolved them against the feed's URL.

        feedparser treats an RSS guid (unless ``isPermaLink="false"``) and an Atom id as a URI relative
        to the document, so ``<guid>42</guid>`` would become ``http://host/path/42``: an id that changes
        when the feed moves. Parsing again without a base URL gives the ids as written.
        """
        parts = urlsplit(self._base)
        origin = f"{parts.scheme}://{parts.netloc}/"
        if not any(str(e.get("id") or "").startswith(origin) for e in parsed.entries):
            return None
        bare = parse_feed(self._body, {"content-type": content_type} if content_type else {})
        if len(bare.entries) != len(parsed.entries):
            return None
        return [e.get("id") for e in bare.entries]

    def _entries(self) -> list[tuple[Record, dt.datetime | None, str | None]]:
        """The entries as (record, cursor, problem): parsed here, or unpacked from the launcher's blob."""
        if self._entry_cache is None:
            if self._entry_blob is not None:
                self._unpack()
            else:
                self._parse()
        if self._entry_cache is None:
            raise FatalConnectorError(
                f"rss {self.url}: the entries were shipped as JSON lines; this reader yields them only as lines"
            )
        return self._entry_cache

    def _entry_meta(self) -> list[tuple[str, dt.datetime | None, str | None]]:
        """(id, cursor, problem) of every entry: all that choosing the window's entries needs."""
        if self._meta is None:
            if self._entry_cache is None and self._entry_blob is not None:
                self._unpack()
            if self._meta is None:
                self._meta = [(rec["id"], cursor, problem) for rec, cursor, problem in self._entries()]
        return self._meta

    def _build_entries(self, parsed, ids) -> list[tuple[Record, dt.datetime | None, str | None]]:
        feed_title = parsed.feed.get("title")
        primary, fallback = ("updated", "published") if self.cursor_field == "updated" else ("published", "updated")
        ids = ids or [None] * len(parsed.entries)
        entries = parsed.entries[:-1] if self._cut else parsed.entries
        out = []
        get = dict.get  # FeedParserDict.get gives the same for these keys (none is an alias), in a Python call each
        for entry, verbatim_id in zip(entries, ids):
            # dict.get: the entry's own dates, without feedparser's deprecated updated -> published fallback
            published = _struct_to_dt(get(entry, "published_parsed"))
            updated = _struct_to_dt(get(entry, "updated_parsed"))
            content = get(entry, "content") or []
            link = get(entry, "link")
            record = {
                "id": verbatim_id or get(entry, "id") or link or _hash_entry(entry),
                "title": get(entry, "title"),
                "link": link,
                "summary": get(entry, "summary"),
                "content": get(content[0], "value") if content else None,
                "author": get(entry, "author"),
                "published": published,
                "updated": updated,
                "tags": [term for term in (get(t, "term") for t in get(entry, "tags", ())) if term],
                "feed_title": feed_title,
                "feed_url": self.url,
            }
            problem = None
            for name, value in (("published", published), ("updated", updated)):
                if value is None and dict.get(entry, name):
                    problem = f"unparseable date {dict.get(entry, name)!r} in {name}"
            cursor = {"updated": updated, "published": published}
            out.append((record, cursor[primary] or cursor[fallback], problem))
        return out

    def _select(self, lo, hi, *, reading: bool = False) -> Iterator[tuple[int, str | None]]:
        """The window's entries as ``(index, problem)``: each dead letter (problem set) as met, then the
        records to deliver (problem None) in cursor order, entries without a date first.

        ``reading``: this is the read itself (logs each backdated entry it delivers), not a look ahead.
        """
        seen = set((self._state.get("seen") or {}).keys())
        undated = set(self._state.get("undated") or ())
        # Backdated entries: one that appeared after the last run but is dated before this window (A, then
        # B dated before A's run, then C) is delivered once, if its guid is new and its date lies within
        # backdated_lookback. Only states that remember guids can tell: older states start remembering now.
        horizon = self._guid_horizon(hi) if lo is not None and "guids" in self._state else None
        known = set((self._state.get("guids") or {}).keys())
        taken: set[str] = set()  # a feed may list the same entry twice: deliver it once
        chosen = []
        undated_first = dt.datetime.min.replace(tzinfo=UTC)
        for index, (entry_id, cursor, problem) in enumerate(self._entry_meta()):
            key = entry_id if (problem or cursor is None) else _key(entry_id, cursor)
            if key in taken:
                continue
            taken.add(key)
            if problem:
                if entry_id not in undated:
                    yield index, f"entry {entry_id!r}: {problem}"
                continue
            if cursor is None:
                if entry_id not in undated:
                    chosen.append((undated_first, index))
                continue
            if cursor >= hi or key in seen:
                continue
            if lo is not None and cursor < lo:
                if horizon is None or cursor < horizon or entry_id in known:
                    continue
                if reading:
                    log.info("rss %s: entry %r is dated %s, before this window, but new: delivering it", self.url,
                             entry_id, cursor.isoformat())
            chosen.append((cursor, index))
        chosen.sort(key=lambda pair: pair[0])  # stable: entries that tie keep the feed's order
        for _, index in chosen:
            yield index, None

    def read_window(self, lo, hi) -> Iterator[Record | DeadLetter]:
        entries = None if self._encoding == "json" else self._entries()
        for index, problem in self._select(lo, hi, reading=True):
            if problem is not None:
                record = entries[index][0] if entries is not None else self._problem_records[index]
                yield DeadLetter("read: rss", problem, dict(record))
            elif entries is not None:
                yield dict(entries[index][0])  # the cached entry stays as parsed, whatever steps do to the record
            else:
                raise FatalConnectorError(
                    f"rss {self.url}: the entries were shipped as JSON lines; read them with read_window_batches"
                )

    @property
    def reads_batches(self) -> bool:  # type: ignore[override]
        """True on the zero-decode path: the read yields the window's JSON lines in batches (read_window_batches)."""
        return self._encoding == "json"

    def read_window_batches(self, lo, hi, batch_size: int) -> Iterator[EncodedBatch | DeadLetter]:
        """The zero-decode read (after ``use_encoding("json")``): the window's entries as batches of JSON lines."""
        if self._encoding != "json":
            raise FatalConnectorError(f"rss {self.url}: read_window_batches is the zero-decode read; call "
                                      "use_encoding('json') on the launcher first, or read records with read_window")
        self._entry_meta()  # unpacks the blob on a worker
        lines = self._lines
        chunk: list[str] = []
        for index, problem in self._select(lo, hi, reading=True):
            if problem is not None:
                yield DeadLetter("read: rss", problem, dict(self._problem_records[index]))
                continue
            chunk.append(lines[index])
            if len(chunk) >= batch_size:
                yield EncodedBatch("json", chunk)
                chunk = []
        if chunk:
            yield EncodedBatch("json", chunk)

    encodings = ("json",)

    def use_encoding(self, encoding: str | None, fields: tuple = ()) -> str | None:
        """Read the entries as JSON lines (``"json"``, for the jsonl sink) instead of records; None: records.

        The lines are encoded here, on the launcher, once, by the encoder the jsonl sink uses for records
        (so the output is the same, byte for byte); the workers then get lines instead of records.
        Field steps are not done by this source: with any, the read stays typed.
        """
        self._entry_blob = None  # what workers get changes with the path
        self._lines = None
        self._encoding = None
        if encoding is None:
            return None
        if encoding != "json":
            return f"the rss source cannot encode {encoding!r}"
        if fields:
            return "the rss source does no field steps while it encodes: the steps run on records"
        try:
            # One record at a time, each line decoded at once: orjson's output buffers are far larger than
            # the line, and 20,000 of them alive at once cost 80 MB (the heap keeps them afterwards).
            entries = self._entries()
            with collector_paused():
                lines = [dumps_bytes(rec).decode("utf-8") for rec, _, _ in entries]
        except (TypeError, ValueError) as exc:  # the sink would dead-letter such a record: let it
            return f"an entry cannot be encoded as JSON ({exc}): the read stays typed"
        self._lines = lines
        self._encoding = "json"
        return None

    # -- the seed interface ------------------------------------------------------------------------------
    def test_connection(self) -> str:
        self.begin_run({})
        self._parse()
        version, title, count = self._feed_info
        return f"rss {self.url}: {version or 'feed'} {(title or '(untitled)')!r}, {count} entries"

    def get_schema(self) -> dict[str, Any]:
        return {
            "fields": [{"name": n, "type": t, "nullable": n not in ("id", "feed_url")} for n, t in _FIELDS],
            "cursor_field": self.cursor_field,
            "primary_key": ["id"],
        }


def _key(entry_id: str, cursor: dt.datetime) -> str:
    return f"{entry_id}|{cursor.isoformat()}"


def _hash_entry(entry) -> str:
    """An id for an entry with neither guid nor link: a hash of its title, text and publication date.

    The update date is left out, so that a new update date alone does not change the id.
    """
    content = entry.get("content") or [{}]
    values = (dict.get(entry, "title"), dict.get(entry, "summary"), content[0].get("value"), dict.get(entry, "published"))
    basis = "\x1f".join(str(v or "") for v in values)
    return "sha256:" + hashlib.sha256(basis.encode("utf-8")).hexdigest()

