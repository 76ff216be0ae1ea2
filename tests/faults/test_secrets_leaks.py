"""Secrets never leak: URL userinfo, secret query keys and secret headers, through every output, --debug included.

Each case runs the real ``osmosis`` CLI against a real loopback server with credentials in every place
a user puts them (``user:password@`` in the URL, ``?api_key=`` and ``&sig=`` in the query, ``X-Auth``,
``X-Api-Key`` and ``Authorization`` headers), then greps everything it printed (stdout and stderr, with
``-v`` and with ``--debug``), ``history --json``, ``sources``, ``state show`` and the bytes of every file
the run left behind (state.db, published output, dead letters) for each secret.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from osmosis_beam.io.rss.transforms import ReadFromRSS
from osmosis_beam.io.web.transforms import ReadFromWeb
from tests.http_fixtures import FeedServer

SECRETS = {
    "password": "Pw-1-sekrit",
    "api_key": "Key-2-sekrit",
    "sig": "Sig-3-sekrit",
    "x_auth": "Hdr-4-sekrit",
    "x_api_key": "Hdr-5-sekrit",
    "bearer": "Hdr-6-sekrit",
}
QUERY = f"?api_key={SECRETS['api_key']}&sig={SECRETS['sig']}"
FEED = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>Secret</title>'
    "<item><guid>a</guid><title>A</title><pubDate>Sat, 01 Jun 2024 10:00:00 GMT</pubDate></item>"
    "</channel></rss>"
)
PAGE = '<html><body><article class="post"><h2>Post</h2><a rel="next" href="/p2' + QUERY + '">next</a></article></body></html>'


@pytest.fixture
def server():
    s = FeedServer().start()
    yield s
    s.stop()


def _url(server: FeedServer, path: str) -> str:
    return server.url(path + QUERY).replace("http://", f"http://reader:{SECRETS['password']}@")


def _headers() -> dict:
    return {"X-Auth": SECRETS["x_auth"], "X-Api-Key": SECRETS["x_api_key"], "Authorization": f"Bearer {SECRETS['bearer']}"}


def _pipeline(tmp_path: Path, kind: str, url: str, name: str = "leak") -> Path:
    source = {"type": kind, "url": url, "headers": _headers(), "request_interval": "0s", "retries": 0}
    if kind == "web":
        source.update(item_selector="article.post", fields={"title": "h2"}, respect_robots_txt=False,
                      next_page="a[rel=next]", max_pages=2)
    spec = {"id": name, "source": source, "sink": {"type": "jsonl", "path": str(tmp_path / "out")}}
    path = tmp_path / "pipelines" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def _assert_clean(where: str, text: str | bytes) -> None:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    for name, value in SECRETS.items():
        assert value.encode() not in data, f"{name} leaked into {where}"


def _assert_files_clean(root: Path, skip: Path) -> int:
    checked = 0
    for path in root.rglob("*"):
        if path.is_file() and skip not in path.parents:
            _assert_clean(str(path), path.read_bytes())
            checked += 1
    return checked


@pytest.mark.parametrize("kind", ["rss", "web"])
def test_a_run_that_succeeds_leaks_nothing_anywhere(kind, server, tmp_path, home, osmosis_cli, faults):
    server.set("/f.xml" + QUERY, FEED, content_type="application/rss+xml", etag='"v1"')
    server.set("/p" + QUERY, PAGE, content_type="text/html; charset=utf-8", etag='"p1"')
    server.set("/p2" + QUERY, PAGE.replace("Post", "Second"), content_type="text/html; charset=utf-8")
    yaml_path = _pipeline(tmp_path, kind, _url(server, "/f.xml" if kind == "rss" else "/p"))
    faults.injected()

    outputs = []
    for args in (["-v", "run", yaml_path], ["--debug", "run", yaml_path], ["history", "--json"], ["sources"],
                 ["state", "show", "leak"]):
        done = osmosis_cli(*args)
        outputs.append(done)
        _assert_clean(f"osmosis {' '.join(map(str, args))}", done.stdout + done.stderr)
    assert outputs[0].returncode == 0, outputs[0].stderr
    # the credentials were really sent, to the right server
    hit = server.hits("/f.xml" + QUERY if kind == "rss" else "/p" + QUERY)[0]["headers"]
    assert hit["X-Auth"] == SECRETS["x_auth"] and hit["Authorization"].startswith("Basic ")
    files = _assert_files_clean(tmp_path, skip=yaml_path.parent)
    assert (home / "state.db").is_file() and files >= 2
    records = [json.loads(line) for p in (tmp_path / "out").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert records and all("***" in (r.get("feed_url") or r.get("page_url")) for r in records)
    faults.checked(len(records))


@pytest.mark.parametrize("kind, status", [("rss", 404), ("web", 500)])
def test_a_failing_run_leaks_nothing_even_with_debug(kind, status, server, tmp_path, home, osmosis_cli, faults):
    path = "/f.xml" if kind == "rss" else "/p"
    server.set(path + QUERY, b"no", status=status, content_type="text/plain")
    yaml_path = _pipeline(tmp_path, kind, _url(server, path))
    faults.injected()
    for args in (["--debug", "run", yaml_path], ["-v", "launch", "--once", "--dir", yaml_path.parent],
                 ["history", "--json"]):
        done = osmosis_cli(*args)
        _assert_clean(f"osmosis {' '.join(map(str, args))}", done.stdout + done.stderr)
        if args[0] == "--debug":
            assert done.returncode == 1 and "Traceback" in done.stderr, done.stderr  # the traceback, redacted
            assert f"{status}" in done.stderr and "api_key=***" in done.stderr
    _assert_files_clean(tmp_path, skip=yaml_path.parent)
    history = json.loads(osmosis_cli("history", "--json").stdout)
    assert history and all(run["status"] == "failed" for run in history)


@pytest.mark.parametrize("kind", ["rss", "web"])
def test_the_read_transform_shows_no_secret_in_display_data_or_pickles(kind, server, faults):
    import pickle

    server.set("/f.xml" + QUERY, FEED, content_type="application/rss+xml")
    server.set("/p" + QUERY, PAGE, content_type="text/html; charset=utf-8")
    if kind == "rss":
        read = ReadFromRSS(url=_url(server, "/f.xml"), headers=_headers(), request_interval="0s")
    else:
        read = ReadFromWeb(url=_url(server, "/p"), headers=_headers(), request_interval="0s", item_selector="article",
                           fields={"title": "h2"}, respect_robots_txt=False)
    faults.injected()
    _assert_clean("display_data", repr(read.display_data()))
    _assert_clean("the pickled transform", pickle.dumps(read))  # what travels to the workers
    assert "api_key=***" in repr(read.display_data()) and "'X-Api-Key': '***'" in repr(read.display_data())


@pytest.mark.parametrize("how", ["literal", "env"])
def test_a_bare_percent_in_a_password_is_never_printed(how, tmp_path, home, osmosis_cli, faults):
    password = "pa%zz-Secret-9"
    dsn = "postgresql://app:" + (password if how == "literal" else "${PCT_PW}") + "@127.0.0.1:9/db"
    folder = tmp_path / "pipelines"
    folder.mkdir()
    yaml_path = folder / "pct.yaml"
    yaml_path.write_text(json.dumps({"id": "pct", "source": {"type": "postgres", "dsn": dsn, "table": "t"},
                                     "sink": {"type": "jsonl", "path": str(tmp_path / "out")}}))
    env = {"PCT_PW": password}
    faults.injected()
    for args in (["validate", yaml_path], ["--debug", "run", yaml_path], ["launch", "--once", "--dir", folder]):
        done = osmosis_cli(*args, env=env)
        text = done.stdout + done.stderr
        assert done.returncode != 0
        assert "percent-encoded" in text and password not in text and "zz-Secret" not in text, text
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != yaml_path:
            assert b"zz-Secret" not in path.read_bytes(), path
    assert os.environ.get("PCT_PW") is None
