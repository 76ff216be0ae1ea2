"""The RSS/Atom connector: feedparser over requests, incremental on entry dates.

Reads RSS 0.9x, 1.0, 2.0 and Atom. The launcher fetches the feed once per run with a conditional GET
(ETag / Last-Modified remembered per feed), so an unchanged feed costs one ``304`` and no Beam job.
Entries are windowed on ``updated`` (or ``published``; see ``incremental.cursor_field``); entries
without a date are delivered exactly once (their ids are remembered while they stay in the feed);
with a ``lookback`` the entries re-read are deduplicated by id and date.

Example (pipeline YAML)::

    source:
      type: rss
      url: https://example.org/feed.xml
      timeout: 30s
"""
from __future__ import annotations

import calendar
import datetime as dt
import email.utils
import hashlib
import logging
from typing import Any, Iterator

import requests

from osmosis_beam import __version__
from osmosis_beam.config import Option
from osmosis_beam.connectors.base import BaseConnector, DeadLetter
from osmosis_beam.exceptions import FatalConnectorError, RetriableConnectorError
from osmosis_beam.timefmt import UTC, utcnow
from osmosis_beam.types import Record, SyncWindow

__all__ = ["RSSConnector"]

log = logging.getLogger(__name__)
USER_AGENT = f"osmosis-beam/{__version__} (RSS/Atom reader; +https://pypi.org/project/osmosis-beam/)"
_FIELDS = (
    ("id", "string"), ("title", "string"), ("link", "string"), ("summary", "string"), ("content", "string"),
    ("author", "string"), ("published", "timestamp"), ("updated", "timestamp"), ("tags", "array<string>"),
    ("feed_title", "string"), ("feed_url", "string"),
)


def _struct_to_dt(value) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromtimestamp(calendar.timegm(value), tz=UTC)


def _http_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class RSSConnector(BaseConnector):
    """RSS 0.9x/1.0/2.0 and Atom feeds over HTTP, with conditional GET."""

    type_name = "rss"
    splittable = False  # one feed is one document: it cannot be read in parts
    cursor_fields = ("updated", "published")
    options = (
        Option("url", required=True, help="the feed's http(s) URL"),
        Option("timeout", "duration", default=dt.timedelta(seconds=30), help="read timeout"),
        Option("connect_timeout", "duration", default=dt.timedelta(seconds=10)),
        Option("user_agent", default=USER_AGENT),
        Option("max_bytes", "int", default=50 * 1024 * 1024, minimum=1),
        Option("headers", "dict", default={}),
        Option("verify_tls", "bool", default=True),
    )

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[str]:
        url = values.get("url")
        if isinstance(url, str) and not url.lower().startswith(("http://", "https://")):
            return [f"url: {url!r} is not an http(s) URL"]
        return []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        problems = self.check_options(self.config)
        if problems:
            from osmosis_beam.exceptions import ConfigError

            raise ConfigError(problems=[f"source.{p}" for p in problems])
        self._body: bytes | None = None
        self._status: int | None = None
        self._headers: dict[str, str] = {}
        self._state: dict[str, Any] = {}
        self._parsed: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_parsed"] = None
        return state

    @property
    def url(self) -> str:
        return self.config["url"]

    # -- HTTP ---------------------------------------------------------------------------
    def _get(self, conditional: dict[str, Any] | None = None) -> requests.Response:
        headers = {"User-Agent": self.config["user_agent"], "Accept": "application/rss+xml, application/atom+xml, "
                   "application/rdf+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"}
        headers.update(self.config["headers"] or {})
        if conditional:
            if conditional.get("etag"):
                headers["If-None-Match"] = conditional["etag"]
            if conditional.get("last_modified"):
                headers["If-Modified-Since"] = conditional["last_modified"]
        timeout = (self.config["connect_timeout"].total_seconds(), self.config["timeout"].total_seconds())
        try:
            resp = requests.get(self.url, headers=headers, timeout=timeout, stream=True, verify=self.config["verify_tls"])
        except requests.Timeout:
            raise RetriableConnectorError(
                f"rss {self.url}: timed out after {timeout[1]:g}s (raise source.timeout if the feed is slow)"
            ) from None
        except requests.ConnectionError as exc:
            raise RetriableConnectorError(f"rss {self.url}: cannot connect ({_reason(exc)})") from None
        except requests.RequestException as exc:
            raise FatalConnectorError(f"rss {self.url}: request failed ({_reason(exc)})") from None
        if resp.status_code == 304:
            resp.close()
            return resp
        if resp.status_code == 429 or resp.status_code >= 500:
            resp.close()
            raise RetriableConnectorError(f"rss {self.url}: the server answered {resp.status_code} {resp.reason}; retry later")
        if resp.status_code >= 400:
            resp.close()
            raise FatalConnectorError(
                f"rss {self.url}: the server answered {resp.status_code} {resp.reason}; check source.url"
            )
        limit = self.config["max_bytes"]
        chunks, size = [], 0
        try:
            for chunk in resp.iter_content(65536):
                size += len(chunk)
                if size > limit:
                    raise FatalConnectorError(
                        f"rss {self.url}: the feed is larger than source.max_bytes ({limit} bytes); raise it if this is expected"
                    )
                chunks.append(chunk)
        except requests.Timeout:
            raise RetriableConnectorError(f"rss {self.url}: timed out reading the feed after {timeout[1]:g}s") from None
        except requests.RequestException as exc:
            raise RetriableConnectorError(f"rss {self.url}: the download broke off ({_reason(exc)})") from None
        finally:
            resp.close()
        resp._content = b"".join(chunks)  # noqa: SLF001 - we streamed it ourselves to cap the size
        return resp

    # -- sync hooks ------------------------------------------------------------------------------
    def begin_run(self, state) -> None:
        self._state = dict(state or {})
        resp = self._get(self._state)
        self._status = resp.status_code
        self._headers = {k.lower(): v for k, v in resp.headers.items()}
        self._body = None if resp.status_code == 304 else resp.content
        self._parsed = None

    def unchanged(self) -> bool:
        return self._status == 304

    def source_clock(self) -> dt.datetime:
        """The feed server's clock (its ``Date`` header), else the launcher's."""
        return _http_date(self._headers.get("date")) or utcnow()

    def end_state(self, window: SyncWindow) -> dict[str, Any]:
        seen: dict[str, str] = {}
        undated: list[str] = []
        lookback = self.incremental.lookback
        for rec, cursor, problem in self._entries():
            if cursor is None or problem:
                undated.append(rec["id"])
            elif lookback and window.hi - lookback <= cursor < window.hi:
                seen[_key(rec["id"], cursor)] = cursor.isoformat()
        return {
            "etag": self._headers.get("etag") or self._state.get("etag"),
            "last_modified": self._headers.get("last-modified") or self._state.get("last_modified"),
            "seen": seen,
            "undated": sorted(set(undated)),
        }

    # -- parsing -------------------------------------------------------------------------------------
    def _parse(self):
        if self._parsed is not None:
            return self._parsed
        import feedparser

        if self._body is None:
            raise FatalConnectorError(f"rss {self.url}: no feed was fetched (begin_run was not called)")
        headers = {"content-location": self.url}
        if "content-type" in self._headers:
            headers["content-type"] = self._headers["content-type"]
        parsed = feedparser.parse(self._body, response_headers=headers)
        if parsed.bozo and not parsed.entries and not parsed.feed.get("title"):
            reason = getattr(parsed, "bozo_exception", None) or "not RSS or Atom"
            raise FatalConnectorError(f"rss {self.url}: not a readable RSS or Atom feed ({reason})")
        if not parsed.version and not parsed.entries:
            raise FatalConnectorError(f"rss {self.url}: the document is not an RSS or Atom feed; check source.url")
        if parsed.bozo:
            log.warning("rss %s: the feed is malformed but readable (%s)", self.url, getattr(parsed, "bozo_exception", ""))
        self._parsed = parsed
        return parsed

    def _entries(self) -> list[tuple[Record, dt.datetime | None, str | None]]:
        parsed = self._parse()
        feed_title = parsed.feed.get("title")
        primary, fallback = ("updated", "published") if self.cursor_field == "updated" else ("published", "updated")
        out = []
        for entry in parsed.entries:
            published = _struct_to_dt(entry.get("published_parsed"))
            updated = _struct_to_dt(entry.get("updated_parsed"))
            content = entry.get("content") or []
            record = {
                "id": entry.get("id") or entry.get("link") or _hash_entry(entry),
                "title": entry.get("title"),
                "link": entry.get("link"),
                "summary": entry.get("summary"),
                "content": content[0].get("value") if content else None,
                "author": entry.get("author"),
                "published": published,
                "updated": updated,
                "tags": [t.get("term") for t in entry.get("tags", []) if t.get("term")],
                "feed_title": feed_title,
                "feed_url": self.url,
            }
            problem = None
            for name, value in (("published", published), ("updated", updated)):
                if value is None and entry.get(name):
                    problem = f"unparseable date {entry.get(name)!r} in {name}"
            cursor = {"updated": updated, "published": published}
            out.append((record, cursor[primary] or cursor[fallback], problem))
        return out

    def read_window(self, lo, hi) -> Iterator[Record | DeadLetter]:
        seen = set((self._state.get("seen") or {}).keys())
        undated = set(self._state.get("undated") or ())
        chosen = []
        for record, cursor, problem in self._entries():
            if problem:
                if record["id"] not in undated:
                    yield DeadLetter("read: rss", f"entry {record['id']!r}: {problem}", record)
                continue
            if cursor is None:
                if record["id"] not in undated:
                    chosen.append((dt.datetime.min.replace(tzinfo=UTC), record))
                continue
            if (lo is not None and cursor < lo) or cursor >= hi or _key(record["id"], cursor) in seen:
                continue
            chosen.append((cursor, record))
        chosen.sort(key=lambda pair: pair[0])
        for _, record in chosen:
            yield record

    # -- the seed interface ------------------------------------------------------------------------------
    def test_connection(self) -> str:
        self.begin_run({})
        parsed = self._parse()
        title = parsed.feed.get("title") or "(untitled)"
        return f"rss {self.url}: {parsed.version or 'feed'} {title!r}, {len(parsed.entries)} entries"

    def get_schema(self) -> dict[str, Any]:
        return {
            "fields": [{"name": n, "type": t, "nullable": n not in ("id", "feed_url")} for n, t in _FIELDS],
            "cursor_field": self.cursor_field,
            "primary_key": ["id"],
        }


def _key(entry_id: str, cursor: dt.datetime) -> str:
    return f"{entry_id}|{cursor.isoformat()}"


def _hash_entry(entry) -> str:
    basis = "\x1f".join(str(entry.get(k) or "") for k in ("title", "summary", "published", "updated"))
    return "sha256:" + hashlib.sha256(basis.encode("utf-8")).hexdigest()


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Max retries exceeded" in text and "(Caused by" in text:
        text = text.split("(Caused by", 1)[1].rstrip(")").strip()
    return text[:300]
