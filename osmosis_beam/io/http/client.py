"""One HTTP client for every HTTP source (web, rss): polite, bounded in time and size, and plain about failures.

What :class:`HttpClient` does for a source:

- **politeness**: one request at a time per host, ``request_interval`` apart (or robots.txt's
  ``Crawl-delay`` / ``Request-rate`` when larger); a clear ``User-Agent``;
- **robots.txt** (RFC 9309) when ``respect_robots_txt``: read once per origin, checked on every redirect
  hop; 401/403 disallow everything, other 4xx allow everything, 429/5xx stop the crawl until it can be read;
- **retries** on timeouts, dropped connections, 408, 429 and 5xx, honouring ``Retry-After`` (seconds or an
  HTTP date), else exponential backoff from ``retry_backoff``; bounded by ``retries``, by ``max_retry_wait``
  of waiting, and by ``page_deadline``;
- **conditional GET**: ``get(url, conditional={"etag": ..., "last_modified": ...})`` sends
  ``If-None-Match`` / ``If-Modified-Since``; the caller keeps the validators in its connector state;
- **size caps**: ``max_bytes`` on the declared length and on the bytes actually received (decompressed);
- **deadlines**: ``deadline`` bounds one request from connect to the last body byte, however slowly the
  server sends (a slowloris server fails the run instead of hanging it), and ``page_deadline`` one
  document with its redirects, retries and waits; ``timeout`` and ``connect_timeout`` bound each wait;
- **redirects** followed by hand (only http/https, loops and ``max_redirects`` refused);
- **credentials** in a URL (``https://user:pw@host/``) go to that origin only, as HTTP Basic auth; every
  URL in a message, log line or response is the public one, with secret query values as ``***``.

Example::

    from osmosis_beam.io.http.client import HttpClient
    client = HttpClient(config, what="rss", accept="application/rss+xml, */*;q=0.1")
    resp = client.get("https://example.org/feed.xml", conditional=state)
    resp.status, resp.headers["etag"], resp.body
    client.close()
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import urllib.robotparser
from typing import Any, Callable, Mapping
from urllib.parse import urljoin

import requests

from osmosis_beam.core.errors import FatalConnectorError, RetriableConnectorError
from osmosis_beam.core.secrets import redact_url
from osmosis_beam.core.timefmt import parse_http_date, utcnow
from osmosis_beam.io.http.deadline import Deadline, mount_deadline_adapter
from osmosis_beam.io.http.errors import explain_connection_error, short_reason
from osmosis_beam.io.http.urls import check_url, origin, split_credentials, strip_fragment

__all__ = ["HttpClient", "HttpResponse", "RobotsDisallowed", "retry_after_seconds"]

log = logging.getLogger(__name__)
REDIRECTS = (301, 302, 303, 307, 308)
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: crawlers parse at least the first 500 KiB


class RobotsDisallowed(FatalConnectorError):
    """robots.txt forbids the URL for the configured User-Agent."""


class _Transient(Exception):
    """A failure worth retrying (read timeout, connection reset, 408, 429, 5xx)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclasses.dataclass
class HttpResponse:
    """A fetched document: the final URL after redirects, lower-cased headers, the body (b"" on 304)."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    fetched_at: dt.datetime


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from now; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = parse_http_date(value)
    if when is None:
        return None
    return max(0.0, (when - utcnow()).total_seconds())


def _seconds(value: Any) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value or 0)


class HttpClient:
    """requests with the sources' politeness and safety rules; lives on the launcher only, never pickled.

    ``what`` names the source in messages (``web``, ``rss``); ``accept`` is the Accept header;
    ``hints`` maps a 4xx status to the fix shown with it (``default_hint`` for the others).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        what: str,
        accept: str,
        credentials: Mapping[str, tuple[str, str]] | None = None,
        hints: Mapping[int, str] | None = None,
        default_hint: str = "",
    ) -> None:
        self.config = config
        self.what = what
        self.credentials = dict(credentials or {})  # origin -> (user, password): sent to that origin only
        self.hints = dict(hints or {})
        self.default_hint = default_hint
        self.session = requests.Session()
        mount_deadline_adapter(self.session)
        self.session.headers.update({"User-Agent": config["user_agent"], "Accept": accept})
        self.session.headers.update({str(k): str(v) for k, v in (config.get("headers") or {}).items()})
        # robots.txt is matched against the User-Agent actually sent (source.headers may set one).
        self.user_agent = self.session.headers["User-Agent"]
        self.session.max_redirects = 5  # robots.txt only; documents follow redirects by hand
        self.timeout = (_seconds(config["connect_timeout"]), _seconds(config["timeout"]))
        self.deadline = _seconds(config.get("deadline") or dt.timedelta(minutes=2))
        self.page_deadline = _seconds(config.get("page_deadline") or dt.timedelta(minutes=5))
        self._last: dict[str, float] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.sleep: Callable[[float], None] = time.sleep

    def close(self) -> None:
        self.session.close()

    def _where(self, url: str) -> str:
        return f"{self.what} {redact_url(url)}"

    # -- politeness --------------------------------------------------------------------------
    def _interval(self, url: str) -> float:
        interval = _seconds(self.config["request_interval"])
        if self.config["respect_robots_txt"]:
            rp = self._robots.get(origin(url))
            if rp is not None:
                delay = rp.crawl_delay(self.user_agent)
                rate = rp.request_rate(self.user_agent)
                if delay:
                    interval = max(interval, float(delay))
                if rate and rate.requests:
                    interval = max(interval, rate.seconds / rate.requests)
        return interval

    def _pace(self, url: str) -> None:
        last = self._last.get(origin(url))
        if last is not None:
            wait = last + self._interval(url) - time.monotonic()
            if wait > 0:
                self.sleep(wait)

    def _done(self, url: str) -> None:
        self._last[origin(url)] = time.monotonic()

    # -- robots.txt ----------------------------------------------------------------------------
    def robots(self, url: str) -> urllib.robotparser.RobotFileParser:
        """The parsed robots.txt of ``url``'s origin, read once per client."""
        site = origin(url)
        rp = self._robots.get(site)
        if rp is not None:
            return rp
        robots_url = site + "/robots.txt"
        where = self._where(robots_url)
        rp = urllib.robotparser.RobotFileParser(robots_url)
        self._pace(robots_url)
        with Deadline(self.deadline) as deadline:
            try:
                resp = self.session.get(
                    robots_url, timeout=self.timeout, stream=True, allow_redirects=True,
                    verify=self.config["verify_tls"], auth=self.credentials.get(site),
                )
            except requests.TooManyRedirects:
                log.warning("%s: redirects too often; treating it as absent (everything allowed)", where)
                rp.allow_all = True
                self._robots[site] = rp
                return rp
            except requests.RequestException as exc:
                reason = self._deadline_reason(deadline, 0) if deadline.expired else explain_connection_error(exc, robots_url)[0]
                raise RetriableConnectorError(
                    f"{where}: cannot be read ({reason}); it must be readable before crawling "
                    "(or set source.respect_robots_txt: false if you may crawl this site regardless)"
                ) from None
            finally:
                self._done(robots_url)
            try:
                status = resp.status_code
                if status in (401, 403):
                    rp.disallow_all = True
                elif status == 429 or status >= 500:
                    raise RetriableConnectorError(
                        f"{where}: the server answered {status} {resp.reason}; crawling waits until robots.txt "
                        "can be read (RFC 9309), retry later"
                    )
                elif status >= 400:
                    rp.allow_all = True
                else:
                    chunks, size = [], 0
                    for chunk in resp.iter_content(65536):
                        chunks.append(chunk)
                        size += len(chunk)
                        if size >= ROBOTS_MAX_BYTES:
                            break
                    if deadline.expired:
                        raise RetriableConnectorError(f"{where}: {self._deadline_reason(deadline, size)}")
                    text = b"".join(chunks)[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace")
                    rp.parse(text.splitlines())
            except requests.RequestException as exc:
                reason = self._deadline_reason(deadline, 0) if deadline.expired else f"the download broke off ({short_reason(exc)})"
                raise RetriableConnectorError(f"{where}: {reason}") from None
            finally:
                resp.close()
        self._robots[site] = rp
        return rp

    def allowed(self, url: str) -> bool:
        return self.robots(url).can_fetch(self.user_agent, url)

    # -- fetching -------------------------------------------------------------------------------
    def get(self, url: str, conditional: Mapping[str, Any] | None = None) -> HttpResponse:
        """GET ``url`` following redirects by hand (scheme, robots.txt and loop checks on every hop).

        Raises :class:`~osmosis_beam.core.errors.RetriableConnectorError` for what a later run may get
        past (timeouts, deadlines, 429/5xx after the retries), FatalConnectorError for the rest, and
        :class:`RobotsDisallowed` when robots.txt forbids a hop.
        """
        headers = {}
        if conditional:
            if conditional.get("etag"):
                headers["If-None-Match"] = conditional["etag"]
            if conditional.get("last_modified"):
                headers["If-Modified-Since"] = conditional["last_modified"]
        started = time.monotonic()
        hops = [url]
        current = url
        while True:
            problem = check_url(current)
            if problem:
                chain = " -> ".join(redact_url(h) for h in hops)
                raise FatalConnectorError(f"{self._where(url)}: cannot follow {chain}: {redact_url(problem)}; only http and https are fetched")
            if self.config["respect_robots_txt"] and not self.allowed(current):
                raise RobotsDisallowed(
                    f"{self._where(current)}: robots.txt at {origin(current)}/robots.txt disallows it for user-agent "
                    f"{self.user_agent!r}; set source.respect_robots_txt: false only if the site allows you to crawl it"
                )
            resp = self._with_retries(current, headers, started)
            if resp.status in REDIRECTS:
                location = resp.headers.get("location")
                if not location:
                    raise FatalConnectorError(f"{self._where(current)}: the server answered {resp.status} without a Location")
                target = split_credentials(strip_fragment(urljoin(current, location.strip())))[0]
                if target in hops:
                    chain = " -> ".join(redact_url(h) for h in [*hops, target])
                    raise FatalConnectorError(f"{self._where(url)}: redirect loop ({chain}); check source.url")
                hops.append(target)
                if len(hops) - 1 > self.config["max_redirects"]:
                    raise FatalConnectorError(
                        f"{self._where(url)}: more than source.max_redirects ({self.config['max_redirects']}) redirects "
                        f"({' -> '.join(redact_url(h) for h in hops)})"
                    )
                current = target
                continue
            resp.url = current
            return resp

    def _with_retries(self, url: str, headers: Mapping[str, str], started: float) -> HttpResponse:
        retries = self.config["retries"]
        budget = _seconds(self.config["max_retry_wait"])
        backoff = _seconds(self.config["retry_backoff"])
        where = self._where(url)
        waited = 0.0
        attempt = 0
        while True:
            self._pace(url)
            left = self.page_deadline - (time.monotonic() - started)
            if left <= 0:
                raise RetriableConnectorError(
                    f"{where}: not fetched within source.page_deadline ({self.page_deadline:g}s, {attempt} "
                    f"attempt{'s' if attempt != 1 else ''}); the next run will retry later, or raise source.page_deadline"
                )
            try:
                return self._attempt(url, headers, min(self.deadline, left), page=left < self.deadline)
            except _Transient as exc:
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                if attempt >= retries:
                    raise RetriableConnectorError(
                        f"{where}: {exc.reason}; gave up after {tries} (source.retries: {retries}); "
                        "the next run will retry later"
                    ) from None
                if exc.retry_after is not None:
                    delay = exc.retry_after
                    if waited + delay > budget:
                        raise RetriableConnectorError(
                            f"{where}: {exc.reason} and asks to retry after {delay:g}s, beyond what "
                            f"source.max_retry_wait ({budget:g}s) allows; the next run will retry later"
                        ) from None
                else:
                    delay = backoff * (2 ** attempt)
                    if waited + delay > budget:
                        delay = budget - waited
                        if delay <= 0:
                            raise RetriableConnectorError(
                                f"{where}: {exc.reason}; gave up after {tries} and {waited:g}s of waiting "
                                f"(source.max_retry_wait: {budget:g}s); the next run will retry later"
                            ) from None
                left = self.page_deadline - (time.monotonic() - started)
                if delay >= left:
                    raise RetriableConnectorError(
                        f"{where}: {exc.reason}; a retry in {delay:g}s would end after source.page_deadline "
                        f"({self.page_deadline:g}s); gave up after {tries}, the next run will retry later"
                    ) from None
                log.info("%s: %s; retrying in %.2fs", where, exc.reason, delay)
                if delay > 0:
                    self.sleep(delay)
                waited += delay
                attempt += 1

    def _deadline_reason(self, deadline: Deadline, received: int, page: bool = False) -> str:
        option = "source.page_deadline" if page else "source.deadline"
        limit = self.page_deadline if page else self.deadline
        return (
            f"the request did not finish within {option} ({limit:g}s; {received} bytes received in "
            f"{deadline.elapsed:.1f}s): the server is stalled or sends too slowly; the next run will retry later, "
            f"or raise {option}"
        )

    def _attempt(self, url: str, headers: Mapping[str, str], seconds: float, *, page: bool) -> HttpResponse:
        connect_s, read_s = self.timeout
        where = self._where(url)
        with Deadline(seconds) as deadline:
            try:
                resp = self.session.get(
                    url, headers=dict(headers), timeout=self.timeout, stream=True, allow_redirects=False,
                    verify=self.config["verify_tls"], auth=self.credentials.get(origin(url)),
                )
            except requests.RequestException as exc:
                if deadline.expired:
                    raise RetriableConnectorError(f"{where}: {self._deadline_reason(deadline, 0, page)}") from None
                if isinstance(exc, requests.ConnectTimeout):
                    raise _Transient(f"could not connect within {connect_s:g}s (source.connect_timeout)") from None
                if isinstance(exc, requests.Timeout):
                    raise _Transient(
                        f"timed out after {read_s:g}s waiting for the server (raise source.timeout if the site is slow)"
                    ) from None
                if isinstance(exc, requests.ConnectionError):
                    reason, retriable = explain_connection_error(exc, url)
                    if not retriable:
                        raise FatalConnectorError(f"{where}: cannot connect: {reason}") from None
                    raise _Transient(f"cannot connect: {reason}") from None
                raise FatalConnectorError(f"{where}: request failed ({short_reason(exc)})") from None
            finally:
                self._done(url)
            try:
                status = resp.status_code
                resp_headers = {k.lower(): v for k, v in resp.headers.items()}
                if status in (408, 429) or status >= 500:
                    raise _Transient(
                        f"the server answered {status} {resp.reason}", retry_after_seconds(resp_headers.get("retry-after"))
                    )
                if status in REDIRECTS or status == 304:
                    return HttpResponse(url, status, resp_headers, b"", utcnow())
                if status >= 400:
                    hint = self.hints.get(status, self.default_hint)
                    raise FatalConnectorError(
                        f"{where}: the server answered {status} {resp.reason}" + (f"; {hint}" if hint else "")
                    )
                if not 200 <= status < 300:
                    raise FatalConnectorError(f"{where}: unexpected HTTP status {status} {resp.reason}")
                body = self._read_body(url, resp, resp_headers, deadline, page)
                self._done(url)
                return HttpResponse(url, status, resp_headers, body, utcnow())
            finally:
                resp.close()

    def _read_body(
        self, url: str, resp: requests.Response, headers: Mapping[str, str], deadline: Deadline, page: bool
    ) -> bytes:
        limit = self.config["max_bytes"]
        where = self._where(url)
        too_big = f"{where}: the document is larger than source.max_bytes ({limit} bytes); raise it if this is expected"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise FatalConnectorError(too_big.replace("larger than", f"{int(length)} bytes, larger than"))
        chunks, size = [], 0
        read_s = self.timeout[1]
        try:
            # read1-style chunks: whatever arrived, so that the size cap and the deadline act promptly
            for chunk in resp.iter_content(65536):
                size += len(chunk)
                if size > limit:
                    raise FatalConnectorError(too_big)
                chunks.append(chunk)
        except requests.RequestException as exc:
            if deadline.expired:
                raise RetriableConnectorError(f"{where}: {self._deadline_reason(deadline, size, page)}") from None
            if "timed out" in str(exc).lower():
                raise _Transient(
                    f"timed out after {read_s:g}s reading the document (raise source.timeout if the site is slow)"
                ) from None
            raise _Transient(f"the download broke off ({short_reason(exc)})") from None
        if deadline.expired:  # the socket was shut down: what arrived is a truncated document
            raise RetriableConnectorError(f"{where}: {self._deadline_reason(deadline, size, page)}")
        return b"".join(chunks)
