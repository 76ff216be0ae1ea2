"""The web scraper connector: HTML pages to records with CSS or XPath selectors, politely and safely.

The launcher fetches the pages once per run (``begin_run``): the start page(s) from ``url``/``urls``,
then the ``next_page`` links up to ``max_pages`` pages per start URL, with a conditional GET per page
(ETag / Last-Modified remembered per page URL), so an unchanged site costs one ``304`` per page and no
Beam job. Each page is decoded (byte-order mark, then the HTTP charset, then ``<meta charset>``, then
detection), parsed as browsers do with ``lxml.html`` (malformed markup is recovered, relative links
become absolute), and every ``item_selector`` match becomes one record with the configured ``fields``.
Only the extracted items travel to the Beam workers.

Example (pipeline YAML)::

    source:
      type: web
      url: https://example.org/news/
      item_selector: article.post              # CSS, or XPath when it starts with / or (
      fields:
        title: h2 a                            # text (whitespace collapsed)
        link: h2 a::attr(href)                 # an attribute (also: "h2 a @href"); links are absolute
        published: time::attr(datetime)
        summary?: p.lead                       # '?' marks a field optional (null when missing)
        body: {selector: div.content::html, required: false}   # inner HTML
        tags: {selector: ul.tags li, all: true}                # every match, as a list
      date_field: published                    # the incremental cursor (without one: the fetch time)
      next_page: a[rel=next]                   # pagination, up to max_pages pages
      max_pages: 5

Field selectors are relative to the item: CSS, or XPath when they start with ``/``, ``(``, ``./``,
``../`` or a function call (``.//a/@href``, ``string(.//h2)``, ``count(.//li)``). A CSS selector (and an XPath that
selects elements) ends with an optional extractor: ``::text`` (the default: the text as a browser
shows it, whitespace collapsed), ``::attr(NAME)`` or ``@NAME``, ``::html`` (inner HTML) or
``::outer_html``. An empty selector means the item itself (``@data-id``, ``::html``).

Fields are required unless marked optional (``name?: selector`` or ``required: false``). An item
whose required field matches nothing (or only empty text) goes to the dead-letter output with the
reason, once. Each record gets ``id`` (the value of a field named ``id`` if configured, else a stable
hash of the ``id_fields``, default all fields), ``page_url`` and ``fetched_at``.

Incremental reads. With ``date_field`` the records are windowed on that date (``date_format``:
strptime formats, else ISO-8601 or RFC 2822; ``timezone`` for dates without a zone). Without it, the
cursor is the fetch time and every item not seen before is delivered: ids are remembered while they
stay on the pages, and for ``incremental.lookback`` after they were last seen.

In Python::

    from osmosis_beam.io.web.source import WebConnector
    web = WebConnector({"url": "https://example.org/news/", "item_selector": "article",
                        "fields": {"title": "h2", "link": "a::attr(href)"}})
    web.test_connection()      # "web https://example.org/news/: 'article' matched 20 items ..."
    records = web.fetch()
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import html as html_lib
import json
import logging
import re
import zoneinfo
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urljoin

from osmosis_beam.core.errors import ConfigError, FatalConnectorError
from osmosis_beam.core.options import Option
from osmosis_beam.core.records import DeadLetter, Record
from osmosis_beam.core.secrets import redact_url
from osmosis_beam.core.timefmt import UTC, parse_http_date, parse_timestamp, utcnow
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.io.http.charset import decode_body
from osmosis_beam.io.http.client import HttpClient, HttpResponse, RobotsDisallowed
from osmosis_beam.io.http.options import default_user_agent, http_options, public_http_options
from osmosis_beam.io.http.urls import check_url, origin, split_credentials, strip_fragment

__all__ = ["WebConnector"]

log = logging.getLogger(__name__)
USER_AGENT = default_user_agent("web reader")
RESERVED_FIELDS = ("page_url", "fetched_at")
_HINTS = {401: "the site needs credentials (source.headers)", 403: "the site refuses access",
          404: "check source.url and source.next_page", 410: "the page is gone"}
_STEP = "read: web"
_XPATH_NS = {"re": "http://exslt.org/regular-expressions"}


# ---------------------------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------------------------

_SUFFIX = re.compile(r"::(text|html|outer_html|attr\(\s*([^)\s]+)\s*\))\s*$")
_AT_ATTR = re.compile(r"(?:^|(?<=\s)|(?<=[\w\])*]))@([A-Za-z_:][-\w:.]*)\s*$")
_XPATH_AXIS_END = re.compile(
    r"(ancestor|ancestor-or-self|attribute|child|descendant|descendant-or-self|following|following-sibling"
    r"|namespace|parent|preceding|preceding-sibling|self)$"
)


_XPATH_CALL = re.compile(r"^[A-Za-z][\w-]*\s*\(")  # string(...), count(...): never CSS (a:not(...) is)


def _is_xpath(selector: str, *, relative: bool) -> bool:
    s = selector.lstrip()
    if s.startswith(("/", "(")) or _XPATH_CALL.match(s):
        return True
    return relative and (s.startswith(("./", "../")) or s in (".", ".."))


@dataclasses.dataclass(frozen=True)
class _Selector:
    """A parsed selector: the CSS or XPath part and how a matched element becomes a value."""

    text: str  # as written (for messages)
    query: str  # the CSS or XPath without the extractor ('' = the context element itself)
    xpath: bool
    extract: str = "text"  # text | html | outer_html | attr
    attr: str | None = None


def _parse_selector(raw: Any, *, relative: bool) -> _Selector:
    """Split ``raw`` into selector and extractor; raise ValueError with a message for bad input."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"must be a CSS or XPath selector (text), got {raw!r}")
    text = raw.strip()
    xpath = _is_xpath(text, relative=relative)
    query, extract, attr = text, "text", None
    match = _SUFFIX.search(text)
    if match and not (xpath and _XPATH_AXIS_END.search(text[: match.start()])):
        query = text[: match.start()].strip()
        kind = match.group(1)
        extract, attr = ("attr", match.group(2)) if kind.startswith("attr") else (kind, None)
    elif not xpath:
        at = _AT_ATTR.search(text)
        if at:
            query, extract, attr = text[: at.start()].strip(), "attr", at.group(1)
    if xpath and not query:
        raise ValueError(f"{raw!r} has no XPath before the extractor")
    return _Selector(text=text, query=query, xpath=xpath, extract=extract, attr=attr)


_EXTRACTORS = ("::text", "::html", "::outer_html", "::attr(NAME)")


def _extractor_hint(query: str) -> str:
    """A hint when a CSS selector ends in something like an extractor that is not one (``::atr(href)``)."""
    import re

    found = re.search(r"::?([A-Za-z_-]+)(\([^)]*\))?\s*$", query)
    if not found:
        return ""
    name, arg = found.group(1), found.group(2) or ""
    from osmosis_beam.core.options import suggest

    guess = suggest(name + ("(" if arg else ""), ["text", "html", "outer_html", "attr("])
    if arg and (guess or name.lower().startswith("at")):
        better = f"::attr{arg}"
    elif guess:
        better = "::" + guess.split("'")[1].rstrip("(")
    else:
        better = None
    where = f"; did you mean {query[: found.start()]}{better}?" if better else ""
    return f"{where} A selector's value is taken with one of {', '.join(_EXTRACTORS)} at its end (default: ::text)"


def _compile(sel: _Selector) -> Callable[[Any], list]:
    """A function from a context element to the list of matches (elements, strings, numbers...)."""
    from lxml import etree

    if not sel.query:
        return lambda el: [el]
    if sel.xpath:
        try:
            xp = etree.XPath(sel.query, namespaces=_XPATH_NS, smart_strings=True)
        except etree.XPathSyntaxError as exc:
            raise ValueError(f"invalid XPath {sel.query!r} ({exc})") from None

        def run_xpath(el):
            result = xp(el)
            return result if isinstance(result, list) else [result]

        return run_xpath
    try:
        from lxml.cssselect import CSSSelector, SelectorError
    except ImportError:
        raise ValueError(
            "CSS selectors need the 'cssselect' package (pip install cssselect), or write the selector as XPath"
        ) from None
    try:
        css = CSSSelector(sel.query, translator="html", namespaces=_XPATH_NS)
    except SelectorError as exc:
        raise ValueError(f"invalid CSS selector {sel.query!r} ({exc}){_extractor_hint(sel.query)}") from None
    return css


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    selector: _Selector
    required: bool = True
    many: bool = False


_FIELD_KEYS = ("selector", "required", "all")


def _parse_field(name: Any, spec: Any) -> _Field:
    if not isinstance(name, str) or not name.strip() or name.strip() == "?":
        raise ValueError(f"field names must be text, got {name!r}")
    name = name.strip()
    required, many = True, False
    if name.endswith("?"):
        name, required = name[:-1].strip(), False
    if isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in _FIELD_KEYS]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}; a field is 'selector' or {{{', '.join(_FIELD_KEYS)}}}")
        if "selector" not in spec:
            raise ValueError("'selector' is required")
        flags = {}
        for key in ("required", "all"):
            value = spec.get(key)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
            flags[key] = value
        if flags["required"] is not None:
            required = flags["required"]
        many = bool(flags["all"])
        spec = spec["selector"]
    selector = _parse_selector(spec, relative=True)
    return _Field(name=name, selector=selector, required=required, many=many)


# ---------------------------------------------------------------------------------------------
# Values from matches
# ---------------------------------------------------------------------------------------------

_SKIP_TEXT = frozenset({"script", "style", "template", "noscript", "head"})
_BLOCK = frozenset(
    "address article aside blockquote br dd details dialog div dl dt fieldset figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hgroup hr li main nav ol p pre section summary table tbody thead tfoot td th tr ul "
    "caption option".split()
)
_URL_DATA_ATTR = re.compile(r"^data-[-\w]*(src|href|url)$", re.I)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _text(el) -> str:
    """The element's text as a browser shows it (no script/style), whitespace collapsed."""
    parts: list[str] = [el.text or ""]

    def walk(node) -> None:
        for child in node:
            tag = child.tag
            if isinstance(tag, str) and tag.lower() not in _SKIP_TEXT:
                block = tag.lower() in _BLOCK
                if block:
                    parts.append(" ")
                if child.text:
                    parts.append(child.text)
                walk(child)
                if block:
                    parts.append(" ")
            if child.tail:
                parts.append(child.tail)

    if isinstance(el.tag, str) and el.tag.lower() in ("script", "style"):
        return _collapse(el.text or "")
    walk(el)
    return _collapse("".join(parts))


def _inner_html(el) -> str:
    import lxml.html

    out = [html_lib.escape(el.text, quote=False)] if el.text else []
    out += [lxml.html.tostring(child, encoding="unicode", with_tail=True) for child in el]
    return "".join(out).strip()


def _absolute(name: str | None, value: str, base: str) -> str:
    if name and _URL_DATA_ATTR.match(name) and value:
        return urljoin(base, value)
    return value


def _value(match: Any, sel: _Selector, base: str) -> Any:
    """One match as a value; '' or None when it has none."""
    import lxml.html
    from lxml import etree

    if isinstance(match, etree._Element):  # noqa: SLF001 - lxml's public element base class
        if not isinstance(match.tag, str):  # a comment or processing instruction
            return _collapse(match.text or "")
        if sel.extract == "attr":
            raw = match.get(sel.attr)
            return None if raw is None else _absolute(sel.attr, raw.strip(), base)
        if sel.extract == "html":
            return _inner_html(match)
        if sel.extract == "outer_html":
            return lxml.html.tostring(match, encoding="unicode", with_tail=False).strip()
        return _text(match)
    if isinstance(match, bool):
        return match
    if isinstance(match, float):
        return int(match) if match.is_integer() else match
    if isinstance(match, str):
        attrname = getattr(match, "attrname", None)
        if attrname is not None or getattr(match, "is_attribute", False):
            return _absolute(attrname, str(match).strip(), base)
        return _collapse(str(match))
    return match


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


# ---------------------------------------------------------------------------------------------
# Decoding and parsing
# ---------------------------------------------------------------------------------------------

_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")


MAX_HTML_DEPTH = 2048  # libxml2's limit with huge_tree (without it: 256, and the rest of the page vanishes)


def _parse_html(text: str, url: str):
    """The document as ``lxml.html`` parses it (recovering like a browser), links made absolute.

    Pages nested deeper than 256 levels are real (generated markup, unclosed tags), and libxml2 silently
    stops at that depth, dropping every item after it; ``huge_tree`` raises the limit to
    :data:`MAX_HTML_DEPTH`. A page deeper still fails with a clear error rather than losing items.
    """
    import lxml.html
    from lxml import etree

    text = _XML_DECL.sub("", text, count=1).replace("\x00", "\ufffd")
    parser = lxml.html.HTMLParser(huge_tree=True)
    try:
        doc = lxml.html.document_fromstring(text, parser=parser, base_url=url)
    except (etree.ParserError, ValueError):  # empty or whitespace-only documents
        doc = lxml.html.document_fromstring("<html><body></body></html>", base_url=url)
    for error in parser.error_log:
        if "excessive depth" in error.message.lower() or error.type_name == "ERR_RESOURCE_LIMIT":
            raise FatalConnectorError(
                f"web {redact_url(url)}: the page nests elements deeper than {MAX_HTML_DEPTH} levels (line {error.line}, "
                f"column {error.column}); the HTML parser stops there, and every item after that point would be lost. "
                "Such markup is usually broken (unclosed tags); ask the site to fix it, or read a page that has less"
            )
    doc.make_links_absolute(url, resolve_base_href=True, handle_failures="ignore")
    return doc


# ---------------------------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Item:
    """One extracted item: the record, its dedup key, its cursor (None: undated) or why it is rejected."""

    record: dict
    key: str
    page: str  # the requested page URL (the key of the page state)
    position: int
    cursor: dt.datetime | None = None
    problem: str | None = None


def _digest(values: Any) -> str:
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _parse_date(text: Any, formats: list[str], tz: dt.tzinfo | None) -> dt.datetime:
    """A page's date text as a UTC-aware datetime; ValueError says what to configure."""
    if isinstance(text, dt.datetime):
        value = text
    else:
        raw = str(text).strip()
        value = None
        if formats:
            for fmt in formats:
                try:
                    value = dt.datetime.strptime(raw, fmt)
                    break
                except ValueError:
                    continue
            if value is None:
                shown = ", ".join(repr(f) for f in formats)
                raise ValueError(f"date {raw!r} does not match source.date_format ({shown})")
        else:
            iso = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
            try:
                value = dt.datetime.fromisoformat(iso)
            except ValueError:
                try:
                    value = email.utils.parsedate_to_datetime(raw)
                except (TypeError, ValueError, IndexError):
                    value = None
            if value is None:
                raise ValueError(
                    f"cannot read the date {raw!r}; set source.date_format (e.g. '%d %B %Y %H:%M')"
                )
    if value.tzinfo is None or value.utcoffset() is None:
        if tz is None:
            raise ValueError(f"the date {str(text).strip()!r} has no time zone; set source.timezone (e.g. UTC)")
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dt.datetime):
        return "timestamp"
    if isinstance(value, list):
        inner = sorted({_type_name(v) for v in value})
        return f"array<{'|'.join(inner) or 'string'}>"
    return "string"


# ---------------------------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------------------------


class WebConnector(BaseConnector):
    """HTML pages scraped with CSS/XPath selectors: pagination, robots.txt, rate limits, conditional GET."""

    type_name = "web"
    splittable = False  # the pages are fetched once on the launcher; the read cannot be split
    cursor_fields = None  # date_field, or fetched_at (checked in __init__)
    options = (
        Option("url", help="the http(s) URL of the first page (or give urls)"),
        Option("urls", "list", help="several start URLs, each paginated on its own"),
        Option("item_selector", required=True, help="CSS, or XPath starting with / or (: one element per item"),
        Option("fields", "dict", required=True, help="name: selector; 'name?' or required: false marks it optional"),
        Option("id_fields", "list", help="the fields whose values make the record id (default: all)"),
        Option("next_page", help="selector of the next page's link"),
        Option("max_pages", "int", default=10, minimum=1, help="pages per start URL"),
        Option("date_field", help="the field holding the item's date: the incremental cursor"),
        Option("date_format", "list", default=[], help="strptime format(s) of date_field (default: ISO-8601, RFC 2822)"),
        Option("timezone", help="IANA zone of dates that carry none (e.g. Europe/Berlin)"),
        *http_options(user_agent=USER_AGENT, max_bytes=10 * 1024 * 1024),
    )

    # -- configuration ------------------------------------------------------------------------------
    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        url, urls = values.get("url"), values.get("urls")
        if url and urls:
            problems.append("url: give url or urls, not both")
        elif not url and not urls:
            problems.append("url: required (the first page's http(s) URL), or give urls")
        for where, items in (("url", [url] if url else []), ("urls", urls or [])):
            for i, item in enumerate(items):
                path = where if where == "url" else f"urls[{i}]"
                problem = check_url(item) if isinstance(item, str) else f"must be a URL, got {item!r}"
                if problem:
                    problems.append(f"{path}: {problem}")
        item_selector = values.get("item_selector")
        if isinstance(item_selector, str) and item_selector.strip():
            try:
                sel = _parse_selector(item_selector, relative=False)
                if sel.extract != "text" or sel.attr:
                    raise ValueError("selects the item elements; extractors (::html, ::attr) belong in fields")
                _compile(sel)
            except ValueError as exc:
                problems.append(f"item_selector: {exc}")
        fields = values.get("fields")
        names: list[str] = []
        parsed: dict[str, _Field] = {}
        if isinstance(fields, Mapping):
            if not fields:
                problems.append("fields: give at least one field (name: selector)")
            for raw_name, spec in fields.items():
                try:
                    field = _parse_field(raw_name, spec)
                    _compile(field.selector)
                except ValueError as exc:
                    problems.append(f"fields.{raw_name}: {exc}")
                    continue
                if field.name in names:
                    problems.append(f"fields.{raw_name}: the field {field.name!r} is given twice")
                if field.name in RESERVED_FIELDS:
                    problems.append(
                        f"fields.{raw_name}: {field.name!r} is set by the connector "
                        f"({', '.join(RESERVED_FIELDS)}); rename it"
                    )
                names.append(field.name)
                parsed[field.name] = field
        next_page = values.get("next_page")
        if next_page is not None:
            try:
                _compile(_parse_selector(next_page, relative=False))
            except ValueError as exc:
                problems.append(f"next_page: {exc}")
        date_field = values.get("date_field")
        if date_field is not None and parsed:
            if date_field not in parsed:
                problems.append(f"date_field: {date_field!r} is not one of the fields ({', '.join(names)})")
            elif parsed[date_field].many:
                problems.append(f"date_field: {date_field!r} takes every match (all: true); a date field has one value")
        for fmt in values.get("date_format") or []:
            if not isinstance(fmt, str) or "%" not in fmt:
                problems.append(f"date_format: {fmt!r} is not a strptime format (e.g. '%d %B %Y')")
        if values.get("date_format") and date_field is None:
            problems.append("date_format: set date_field too (the field the format reads)")
        timezone = values.get("timezone")
        if timezone is not None:
            try:
                zoneinfo.ZoneInfo(str(timezone))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                problems.append(f"timezone: unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)")
        for i, name in enumerate(values.get("id_fields") or []):
            if parsed and name not in parsed:
                problems.append(f"id_fields[{i}]: {name!r} is not one of the fields ({', '.join(names)})")
        return problems

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        problems: list[str] = []
        date_field = self.config["date_field"]
        cursor = date_field or "fetched_at"
        asked = self.incremental.cursor_field
        if asked is not None and asked != cursor:
            problems.append(
                f"incremental.cursor_field: the web connector's cursor is source.date_field "
                f"({'fetched_at, as no date_field is set' if not date_field else repr(date_field)}), got {asked!r}"
            )
        if problems:
            raise ConfigError(problems=problems)
        self.cursor_field = cursor
        config = self.config
        # Credentials in a start URL (https://user:pw@host/) are sent to that origin only, and never
        # appear in records, state, logs or errors: every URL inside the connector is the public one.
        self._credentials: dict[str, tuple[str, str]] = {}
        starts = []
        for raw in [config["url"]] if config["url"] else config["urls"]:
            public, creds = split_credentials(raw)
            if creds is not None:
                self._credentials[origin(public)] = creds
            starts.append(public)
        self.start_urls: tuple[str, ...] = tuple(starts)
        self.fields: tuple[_Field, ...] = tuple(_parse_field(k, v) for k, v in config["fields"].items())
        self.item_selector = _parse_selector(config["item_selector"], relative=False)
        self.next_page = _parse_selector(config["next_page"], relative=False) if config["next_page"] else None
        self.id_fields = tuple(config["id_fields"] or [f.name for f in self.fields])
        self.date_formats = list(config["date_format"] or [])
        self.tz = zoneinfo.ZoneInfo(config["timezone"]) if config["timezone"] else None
        self._compiled: dict[str, Callable] = {}
        self._reset({})

    def _reset(self, state: Mapping[str, Any]) -> None:
        self._state: dict[str, Any] = dict(state or {})
        self._items: list[_Item] = []
        self._fetched: dict[str, dict[str, Any]] = {}  # page URL -> validators and next link (200 pages)
        self._unchanged: dict[str, dict[str, Any]] = {}  # page URL -> its previous state (304 pages)
        self._server_clock: dt.datetime | None = None
        self._clock: dt.datetime | None = None
        self._last_fetch: dt.datetime | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers only select among the items fetched on the launcher: credentials and headers stay home.
        state = super().__getstate__()
        state["_compiled"] = {}
        state["_credentials"] = {}
        state["config"] = public_http_options(state["config"], drop_headers=True)
        state["start_urls"] = tuple(redact_url(u) for u in self.start_urls)  # workers never fetch
        return state

    def display(self) -> dict[str, Any]:
        """The options for logs and display data: URL credentials and secret-looking headers as ``***``."""
        return public_http_options(super().display())

    def _matches(self, sel: _Selector, el) -> list:
        fn = self._compiled.get(sel.text)
        if fn is None:
            try:
                fn = self._compiled[sel.text] = _compile(sel)
            except ValueError as exc:  # checked at build time; only a missing cssselect gets here
                raise FatalConnectorError(f"web: selector {sel.text!r}: {exc}") from None
        from lxml import etree

        try:
            return fn(el)
        except etree.XPathError as exc:
            raise FatalConnectorError(f"web: selector {sel.text!r} cannot be evaluated ({exc})") from None

    # -- fetching and extraction (launcher) ----------------------------------------------------
    def connect(self) -> None:
        """Nothing to open up front: the HTTP session starts with the first fetch (never on workers)."""

    def disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def _http(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(
                self.config, what="web", accept="text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
                credentials=self._credentials, hints=_HINTS,
            )
        return self._client

    def _page(self, resp: HttpResponse, requested: str) -> tuple[list[_Item], str | None, int]:
        """The items of one fetched page, its next link, and how many elements item_selector matched."""
        content_type = resp.headers.get("content-type")
        media = (content_type or "").split(";")[0].strip().lower()
        if media and not (media.startswith("text/") or media.endswith(("html", "xml"))):
            log.warning("web %s: the server says %s, not HTML; parsing it as HTML anyway", resp.url, media)
        text, codec, how = decode_body(resp.body, content_type)
        log.debug("web %s: %d bytes decoded as %s (%s)", resp.url, len(resp.body), codec, how)
        doc = _parse_html(text, resp.url)
        elements = self._matches(self.item_selector, doc)
        from lxml import etree

        items = []
        for position, el in enumerate(elements, start=1):
            if not isinstance(el, etree._Element) or not isinstance(el.tag, str):  # noqa: SLF001
                raise FatalConnectorError(
                    f"web {resp.url}: item_selector {self.item_selector.text!r} must select elements, "
                    f"got {type(el).__name__} {str(el)[:40]!r}"
                )
            items.append(self._item(el, position, resp, requested))
        return items, self._next_link(doc, resp.url), len(elements)

    def _item(self, el, position: int, resp: HttpResponse, requested: str) -> _Item:
        values: dict[str, Any] = {}
        missing: list[str] = []
        for field in self.fields:
            found = [_value(m, field.selector, resp.url) for m in self._matches(field.selector, el)]
            found = [v for v in found if not _empty(v)]
            value: Any = found if field.many else (found[0] if found else None)
            if _empty(value):
                value = [] if field.many else None
                if field.required:
                    missing.append(field.name)
            values[field.name] = value
        given_id = values.get("id")
        record_id = given_id if not _empty(given_id) else _digest([[n, values.get(n)] for n in self.id_fields])
        record = {**values, "id": record_id, "page_url": redact_url(resp.url), "fetched_at": resp.fetched_at}
        item = _Item(record=record, key=str(record_id), page=requested, position=position)
        where = f"{redact_url(resp.url)} item {position}"
        if missing:
            shown = ", ".join(f"{n!r} ({self._field(n).selector.text!r})" for n in missing)
            item.problem = f"{where}: required field{'s' if len(missing) > 1 else ''} {shown} matched nothing"
        date_field = self.config["date_field"]
        if date_field and not item.problem and values.get(date_field) is not None:
            try:
                item.cursor = _parse_date(values[date_field], self.date_formats, self.tz)
                record[date_field] = item.cursor
                item.key = f"{record_id}|{item.cursor.isoformat()}"
            except ValueError as exc:
                item.problem = f"{where}: field {date_field!r}: {exc}"
        if item.problem:
            item.key = "!" + _digest(values)
        return item

    def _field(self, name: str) -> _Field:
        return next(f for f in self.fields if f.name == name)

    def _next_link(self, doc, base: str) -> str | None:
        if self.next_page is None:
            return None
        sel = self.next_page
        for match in self._matches(sel, doc):
            if sel.extract == "text" and hasattr(match, "get") and hasattr(match, "tag"):
                href = match.get("href")
            else:
                href = _value(match, sel, base)
            if not isinstance(href, str) or not href.strip() or href.strip().startswith("#"):
                continue
            url = split_credentials(strip_fragment(urljoin(base, href.strip())))[0]
            problem = check_url(url)
            if problem:
                log.warning("web %s: next_page link %s; pagination stops here", base, problem)
                return None
            return url
        return None

    def begin_run(self, state: Mapping[str, Any]) -> None:
        """Fetch the pages (conditional GET per page) and extract the items; runs on the launcher."""
        self._reset(state)
        prev_pages: Mapping[str, Any] = self._state.get("pages") or {}
        visited: set[str] = set()
        max_pages = self.config["max_pages"]
        for start in self.start_urls:
            url: str | None = strip_fragment(start)
            count = 0
            while url is not None and url not in visited:
                if count >= max_pages:
                    log.info("web %s: stopped after source.max_pages (%d) pages; %s not fetched", start, max_pages, url)
                    break
                visited.add(url)
                count += 1
                # The page state is keyed by the public URL: secret query values never reach state.db.
                key = redact_url(url)
                prev = prev_pages.get(key)
                try:
                    resp = self._http.get(url, prev)
                except RobotsDisallowed as exc:
                    if count == 1:
                        raise
                    log.warning("%s; pagination stops here", exc.message)
                    break
                if self._server_clock is None:
                    self._server_clock = parse_http_date(resp.headers.get("date"))
                self._last_fetch = resp.fetched_at
                if resp.status == 304:
                    if not prev:
                        raise FatalConnectorError(f"web {key}: the server answered 304 Not Modified to a plain GET")
                    self._unchanged[key] = dict(prev)
                    url = prev.get("next")
                    continue
                items, next_url, matched = self._page(resp, key)
                if not matched and count == 1:
                    log.warning(
                        "web %s: item_selector %r matched nothing on the first page; if the site changed, fix the "
                        "selector (osmosis test shows what it matches)", resp.url, self.item_selector.text,
                    )
                self._items.extend(items)
                shown_next = redact_url(next_url) if next_url else next_url
                self._fetched[key] = {
                    "etag": resp.headers.get("etag"),
                    "last_modified": resp.headers.get("last-modified"),
                    "next": shown_next,
                    # a next link holding a secret cannot be stored, so this page is always fetched in full
                    # (a 304 would leave pagination nowhere to go)
                    "secret_next": shown_next != next_url,
                }
                url = next_url
        log.info(
            "web: %d pages fetched, %d unchanged, %d items", len(self._fetched), len(self._unchanged), len(self._items)
        )

    def unchanged(self) -> bool:
        return not self._fetched and bool(self._unchanged)

    def source_clock(self) -> dt.datetime:
        """The site's clock (its ``Date`` header) with a date field; else the time after the last fetch.

        Never earlier than the clock of the last committed run, so a window always moves forward.
        """
        now = utcnow()
        if self.config["date_field"]:
            clock = self._server_clock or now
        else:
            clock = max(now, (self._last_fetch or now) + dt.timedelta(microseconds=1))
        previous = self._state.get("clock")
        if previous:
            clock = max(clock, parse_timestamp(previous) + dt.timedelta(microseconds=1))
        self._clock = clock
        return clock

    # -- selection (the same on the launcher and on workers) ----------------------------------------
    def _select(self, lo: dt.datetime | None, hi: dt.datetime) -> tuple[list[_Item], list[_Item]]:
        """The items to deliver (in cursor order) and the items to dead-letter, for window ``[lo, hi)``."""
        seen = self._state.get("seen") or {}
        taken: set[str] = set()
        deliver: list[tuple[dt.datetime, int, _Item]] = []
        dead: list[_Item] = []
        for n, item in enumerate(self._items):
            if item.key in taken or item.key in seen:
                continue
            if item.problem:
                dead.append(item)
            elif item.cursor is None:
                deliver.append((dt.datetime.min.replace(tzinfo=UTC), n, item))
            elif (lo is not None and item.cursor < lo) or item.cursor >= hi:
                continue
            else:
                deliver.append((item.cursor, n, item))
            taken.add(item.key)
        deliver.sort(key=lambda t: (t[0], t[1]))
        return [item for _, _, item in deliver], dead

    def window_is_empty(self, window: SyncWindow) -> bool:
        deliver, dead = self._select(window.lo, window.hi)
        return not deliver and not dead

    def read_window(self, lo, hi) -> Iterator[Record | DeadLetter]:
        deliver, dead = self._select(lo, hi)
        for item in dead:
            yield DeadLetter(_STEP, item.problem, item.record)
        for item in deliver:
            yield dict(item.record)

    def end_state(self, window: SyncWindow) -> dict[str, Any]:
        """Page validators, and the keys to deduplicate by next time (no secrets; JSON-safe)."""
        clock = (self._clock or window.hi).isoformat()
        if window.is_empty:
            # The run reads nothing (its window is empty): remember nothing new, or items would be lost.
            return {**self._state, "clock": clock}
        hi = window.hi
        lookback = self.incremental.lookback
        horizon = hi - lookback if lookback else None
        now = (self._last_fetch or utcnow()).isoformat()
        seen: dict[str, str] = {}
        page_keys: dict[str, list[str]] = {url: [] for url in self._fetched}
        held_back: set[str] = set()
        for item in self._items:
            if item.problem or item.cursor is None:
                seen[item.key] = now  # delivered (or dead-lettered) once, remembered while on the pages
                page_keys[item.page].append(item.key)
            elif item.cursor >= hi:
                held_back.add(item.page)  # a later window takes it: fetch this page in full next time
            elif horizon is not None and item.cursor >= horizon and (window.lo is None or item.cursor >= window.lo):
                seen[item.key] = item.cursor.isoformat()
        for page in self._unchanged.values():
            for key in page.get("keys") or ():
                seen[key] = now
        for key, when in (self._state.get("seen") or {}).items():
            if key in seen:
                continue
            try:
                last = parse_timestamp(when)
            except ValueError:
                continue
            if horizon is not None and last >= horizon:
                seen[key] = when
        pages: dict[str, Any] = {}
        for url, info in self._fetched.items():
            entry = {"next": info["next"], "keys": sorted(set(page_keys[url]))}
            if url not in held_back and not info.get("secret_next"):
                entry["etag"] = info["etag"]
                entry["last_modified"] = info["last_modified"]
            pages[url] = entry
        pages.update(self._unchanged)
        return {"clock": clock, "pages": pages, "seen": seen}

    # -- the seed interface ---------------------------------------------------------------------------
    def _first_pages(self) -> list[tuple[str, list[_Item], str | None, int]]:
        out = []
        for url in self.start_urls:
            resp = self._http.get(strip_fragment(url))
            items, next_url, matched = self._page(resp, url)
            out.append((resp.url, items, next_url, matched))
        return out

    def test_connection(self) -> str:
        """Fetch each start URL's first page; report the items matched, or raise when there are none."""
        self.connect()
        lines = []
        for url, items, next_url, matched in self._first_pages():
            if not matched:
                raise FatalConnectorError(
                    f"web {url}: item_selector {self.item_selector.text!r} matched no element on the page; "
                    "check the selector against the page's HTML (the connector sees the HTML as served, "
                    "without running JavaScript)"
                )
            counts = []
            for field in self.fields:
                present = sum(1 for i in items if not _empty(i.record.get(field.name)))
                counts.append(f"{field.name} {present}/{len(items)}")
            plural = "s" if matched != 1 else ""
            line = f"web {url}: {self.item_selector.text!r} matched {matched} item{plural} ({', '.join(counts)})"
            rejected = [i for i in items if i.problem]
            if rejected:
                line += f"; {len(rejected)} would go to the dead-letter output, e.g. {rejected[0].problem}"
            if self.next_page is not None:
                line += f"; next page {next_url}" if next_url else "; no next page"
            lines.append(line)
        return "\n".join(lines)

    def get_schema(self) -> dict[str, Any]:
        """The configured fields with the types seen on the first page of each start URL."""
        self.connect()
        sample = [item for _, items, _, _ in self._first_pages() for item in items]
        fields = []
        for field in self.fields:
            values = [i.record.get(field.name) for i in sample if not i.problem]
            seen = sorted({_type_name(v) for v in values if not _empty(v)})
            if field.name == self.config["date_field"]:
                seen = ["timestamp"]
            default = "array<string>" if field.many else "string"
            fields.append({
                "name": field.name,
                "type": "|".join(seen) if seen else default,
                "nullable": not field.required,
                "selector": field.selector.text,
                "present": sum(1 for i in sample if not _empty(i.record.get(field.name))),
            })
        names = {f.name for f in self.fields}
        if "id" not in names:
            fields.append({"name": "id", "type": "string", "nullable": False, "selector": None,
                           "present": len(sample)})
        fields.append({"name": "page_url", "type": "string", "nullable": False, "selector": None,
                       "present": len(sample)})
        fields.append({"name": "fetched_at", "type": "timestamp", "nullable": False, "selector": None,
                       "present": len(sample)})
        return {"fields": fields, "cursor_field": self.cursor_field, "primary_key": ["id"], "sample_items": len(sample)}
