"""feedparser, minus work whose result is known in advance: the same parse, about a quarter less CPU.

Two kinds of feedparser's pure-Python work give results that can be had for less, exactly:

- **URL joins.** Each start tag joins the document's base URL with itself (``make_safe_absolute_uri(base,
  base)``), and every link and guid is joined with the base. With the feed's own URL as base
  (``Content-Location``, so that relative links resolve against where the feed came from) that is one
  ``urllib.parse.urljoin`` per element. ``feedparser.urls._urljoin(base, uri)`` is a pure function of its
  two strings, so an LRU cache in front of it returns what it would have computed; the calls repeat (the
  same base, a guid equal to the link), so most of them hit.
- **HTML passes over text without markup.** Every HTML-typed value (an RSS ``description`` is HTML) goes
  through ``resolve_relative_uris`` and ``_sanitize_html``, each an sgmllib parse. On a string with neither
  ``<`` nor ``&`` those parsers see one run of plain text and hand it back verbatim: resolving returns the
  string itself, sanitizing returns it stripped with ``\\r\\n`` as ``\\n``. Such strings skip the parse;
  any other string goes through feedparser's own code.
- **Plain keys of ``FeedParserDict``.** Its ``get``, ``in``, ``setdefault`` and ``[]`` are Python methods that
  test each key against the aliases it maps (``description`` -> ``summary``, ``updated`` -> ``published``,
  ``category``, ...), hundreds of thousands of calls per feed, most on the parser's own ``contentparams``
  (``type``, ``base64``, ``mode``). For a key that is no alias and a ``FeedParserDict`` itself (not a
  subclass), each of them is the plain ``dict`` method: it is called directly. Aliases go through
  feedparser's code, as before.
- **Copies of ``contentparams``.** Each title, summary and content value is stored with a
  ``copy.deepcopy(self.contentparams)``: a ``FeedParserDict`` of strings. ``copy.deepcopy`` of such a
  dict (no instance attributes, keys that are no alias, immutable values) builds a new ``FeedParserDict``
  with the same items in the same order: it is built directly; anything else goes to ``copy.deepcopy``.

While it parses, the cyclic garbage collector waits (``collector_paused``): feedparser allocates millions of
objects, and each few hundred allocations start a collection that walks them, about a tenth of the run's
CPU; nothing of the output depends on it, and the collector is on again (if it was) right after.

The replacements are installed once, process-wide, in the feedparser modules that look these functions up
(``feedparser.urls``, ``feedparser.mixin``, ``feedparser.util.FeedParserDict``); each keeps feedparser's
function as ``__wrapped__`` (``replaced()`` lists them all). A feedparser without these names is used as it is.

Example::

    from osmosis_beam.io.rss.feed import parse_feed
    parsed = parse_feed(body, {"content-location": url, "content-type": "application/rss+xml"})
    parsed.entries[0].link
"""
from __future__ import annotations

import contextlib
import copy
import functools
import gc
import sys
import threading
from typing import Any, Iterator

__all__ = ["collector_paused", "parse_feed", "replaced"]

_CACHE_SIZE = 4096
_lock = threading.Lock()
_installed = False
_replaced: list[tuple[Any, str]] = []  # (owner, name) of every replacement installed
# Keys that FeedParserDict.__getitem__ / __contains__ treat apart from its keymap's aliases.
_SPECIAL_KEYS = frozenset({"category", "enclosures", "license", "updated", "updated_parsed"})
# Values that copy.deepcopy returns as they are.
_ATOMIC = frozenset({str, int, float, bool, type(None)})


def _plain_text_resolver(resolve):
    @functools.wraps(resolve)
    def resolve_relative_uris(html_source, base_uri, encoding, type_):
        if isinstance(html_source, str) and "<" not in html_source and "&" not in html_source:
            return html_source  # no tag, no reference: the resolver's output is its input
        return resolve(html_source, base_uri, encoding, type_)

    return resolve_relative_uris


def _plain_text_sanitizer(sanitize):
    @functools.wraps(sanitize)
    def _sanitize_html(html_source, encoding, _type):
        if isinstance(html_source, str) and "<" not in html_source and "&" not in html_source:
            return html_source.strip().replace("\r\n", "\n")  # what _sanitize_html does after its parse
        return sanitize(html_source, encoding, _type)

    return _sanitize_html


def _plain_key_methods(cls):
    """``get``, ``__contains__``, ``setdefault`` and ``__getitem__`` of ``cls`` (feedparser's FeedParserDict),
    each calling the ``dict`` method for a key that is no alias on an instance of ``cls`` itself."""
    keymap = cls.__dict__.get("keymap")
    if not isinstance(keymap, dict):
        return {}
    odd_get, odd_contains, odd_setdefault, odd_getitem = cls.get, cls.__contains__, cls.setdefault, cls.__getitem__
    dict_get, dict_contains, dict_setdefault, dict_getitem = dict.get, dict.__contains__, dict.setdefault, dict.__getitem__

    # Each method inlines the test (a call less: they run hundreds of thousands of times per feed). A key
    # that cannot be hashed raises TypeError in the test: feedparser's own code says what it makes of it.
    @functools.wraps(odd_get)
    def get(self, key, default=None):
        try:
            plain = type(self) is cls and key not in _SPECIAL_KEYS and key not in self.keymap
        except TypeError:
            plain = False
        return dict_get(self, key, default) if plain else odd_get(self, key, default)

    @functools.wraps(odd_contains)
    def __contains__(self, key):
        try:
            plain = type(self) is cls and key not in _SPECIAL_KEYS and key not in self.keymap
        except TypeError:
            plain = False
        return dict_contains(self, key) if plain else odd_contains(self, key)

    @functools.wraps(odd_setdefault)
    def setdefault(self, k, default):
        try:
            plain = type(self) is cls and k not in _SPECIAL_KEYS and k not in self.keymap
        except TypeError:
            plain = False
        return dict_setdefault(self, k, default) if plain else odd_setdefault(self, k, default)

    @functools.wraps(odd_getitem)
    def __getitem__(self, key):
        try:
            plain = type(self) is cls and key not in _SPECIAL_KEYS and key not in self.keymap
        except TypeError:
            plain = False
        return dict_getitem(self, key) if plain else odd_getitem(self, key)

    return {"get": get, "__contains__": __contains__, "setdefault": setdefault, "__getitem__": __getitem__}


class _ContentParamsCopy:
    """The ``copy`` module as ``feedparser.mixin`` sees it, with a direct ``deepcopy`` of a plain FeedParserDict."""

    def __init__(self, module, cls) -> None:
        self.__wrapped__ = module
        self._cls = cls

    def __getattr__(self, name):
        return getattr(self.__wrapped__, name)

    def deepcopy(self, x, memo=None, _nil=[]):  # noqa: B006 - copy.deepcopy's own signature
        cls = self._cls
        if memo is None and type(x) is cls and not x.__dict__ and not dict.__contains__(x, "__deepcopy__"):
            keymap = cls.keymap
            for key, value in dict.items(x):
                if type(key) is not str or key in keymap or type(value) not in _ATOMIC:
                    break
            else:
                # What deepcopy builds: cls.__new__(cls), then y[key] = value for each item (no key is an alias,
                # so __setitem__ stores it under the key itself), every value the object it was. (A key
                # "__deepcopy__" would be found by cls.__getattr__ and called: deepcopy's own code does that.)
                y = cls.__new__(cls)
                dict.update(y, x)
                return y
        return self.__wrapped__.deepcopy(x, memo, _nil)


def replaced() -> list[tuple[Any, str]]:
    """``(owner, name)`` of every replacement in place; ``getattr(owner, name).__wrapped__`` is feedparser's own."""
    _install()
    return list(_replaced)


def _install() -> None:
    """Put the replacements in place in ``feedparser.urls`` and ``feedparser.mixin`` (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        try:
            from feedparser import mixin, urls
        except ImportError:  # another layout: feedparser as it is
            return
        join = getattr(urls, "_urljoin", None)
        if callable(join) and not hasattr(join, "__wrapped__"):
            cached = functools.lru_cache(maxsize=_CACHE_SIZE)(join)
            urls._urljoin = cached  # noqa: SLF001 - make_safe_absolute_uri and RelativeURIResolver look it up here
            _replaced.append((urls, "_urljoin"))
            if getattr(mixin, "_urljoin", None) is join:
                mixin._urljoin = cached  # noqa: SLF001 - the parser's own reference (xml:base, resolve_uri)
                _replaced.append((mixin, "_urljoin"))
        resolve = getattr(mixin, "resolve_relative_uris", None)
        if callable(resolve) and not hasattr(resolve, "__wrapped__"):
            mixin.resolve_relative_uris = _plain_text_resolver(resolve)
            _replaced.append((mixin, "resolve_relative_uris"))
        sanitize = getattr(mixin, "_sanitize_html", None)
        if callable(sanitize) and not hasattr(sanitize, "__wrapped__"):
            mixin._sanitize_html = _plain_text_sanitizer(sanitize)  # noqa: SLF001
            _replaced.append((mixin, "_sanitize_html"))
        cls = getattr(mixin, "FeedParserDict", None)
        # The keys FeedParserDict treats apart (_SPECIAL_KEYS) are those of feedparser 6.0; another release
        # may treat others apart, so it keeps its own methods.
        version = str(getattr(sys.modules.get("feedparser"), "__version__", ""))
        if (version.startswith("6.0.") and isinstance(cls, type) and issubclass(cls, dict)
                and not hasattr(cls.__dict__.get("get"), "__wrapped__")):
            for name, method in _plain_key_methods(cls).items():
                setattr(cls, name, method)
                _replaced.append((cls, name))
            if getattr(mixin, "copy", None) is copy and cls.__dict__.get("keymap") is not None:
                mixin.copy = _ContentParamsCopy(copy, cls)  # the module mixin calls copy.deepcopy on
                _replaced.append((mixin, "copy"))


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block, and on again after it if it was on before.

    For blocks that allocate a great many objects and free none of them cyclically (a feed's parse, its
    records): reference counting frees what they drop as usual. Nested or concurrent blocks leave the
    collector on once the block that turned it off ends.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def parse_feed(body: bytes, response_headers: dict[str, str]) -> Any:
    """``feedparser.parse(body, response_headers=...)``, with the replacements above installed."""
    import feedparser

    _install()
    with collector_paused():
        return feedparser.parse(body, response_headers=response_headers)
