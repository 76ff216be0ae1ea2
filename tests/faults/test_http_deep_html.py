"""HTML nested deeper than 256 levels must not silently drop the items after it (issue 15 item 15).

libxml2 stops at depth 256 without ``huge_tree``; every ``article`` after a deeply nested block used
to vanish with no warning. Now the web connector reads pages up to 2048 levels deep, and a page
deeper still fails the run with a clear error instead of losing items.
"""
from __future__ import annotations

import pytest

from osmosis_beam.core.errors import FatalConnectorError
from osmosis_beam.io.web.source import MAX_HTML_DEPTH, WebConnector
from tests.http_fixtures import FeedServer


def _page(depth: int, items: int = 5) -> str:
    deep = "<div>" * depth + "deep" + "</div>" * depth
    posts = "".join(f'<article class="post"><h2>Post {i}</h2></article>' for i in range(items))
    return f"<html><body><article class=\"post\"><h2>Before</h2></article>{deep}{posts}</body></html>"


@pytest.fixture
def server():
    s = FeedServer().start()
    yield s
    s.stop()


def _read(server: FeedServer, path: str) -> list[dict]:
    web = WebConnector({"url": server.url(path), "item_selector": "article.post", "fields": {"title": "h2"},
                        "respect_robots_txt": False, "request_interval": "0s"})
    web.begin_run({})
    return list(web.read_window(None, web.source_clock()))


@pytest.mark.parametrize("depth", [300, 1000, MAX_HTML_DEPTH - 10])
def test_items_after_deeply_nested_markup_are_read(depth, server, faults):
    server.set("/deep", _page(depth), content_type="text/html; charset=utf-8")
    faults.injected()
    records = _read(server, "/deep")
    assert [r["title"] for r in records] == ["Before"] + [f"Post {i}" for i in range(5)]
    faults.checked(len(records))


def test_a_page_deeper_than_the_parser_goes_fails_clearly(server, faults):
    server.set("/deeper", _page(MAX_HTML_DEPTH + 500), content_type="text/html; charset=utf-8")
    faults.injected()
    with pytest.raises(FatalConnectorError) as info:
        _read(server, "/deeper")
    message = info.value.message
    assert f"deeper than {MAX_HTML_DEPTH} levels" in message and "would be lost" in message
    assert server.url("/deeper") in message
