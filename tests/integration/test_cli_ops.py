"""Operations from the command line: structured logs, live progress, CLI rough edges (issue 13).

Every test runs the real ``osmosis`` command in a subprocess against real services on loopback.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FEED = (ROOT / "pipelines" / "feeds" / "tech_news.xml").read_bytes()
SECRET = "hunter2-Zq9-secret"
LOG_KEYS = {"time", "level", "logger", "pipeline", "run_id", "event", "message"}


@pytest.fixture
def news_yaml(tmp_path, feed_server):
    feed_server.set("/feed.xml", FEED, content_type="application/rss+xml", etag='"v1"')
    data = {
        "id": "tech_news",
        "source": {"type": "rss", "url": feed_server.url("/feed.xml")},
        "incremental": {"cursor_field": "published", "start": "2024-01-01T00:00:00Z"},
        "sink": {"type": "jsonl", "path": "./data/news"},
    }
    path = tmp_path / "news.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def refused_port():
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def secret_pg_yaml(tmp_path, refused_port):
    """A postgres pipeline whose DSN holds a password (from the environment) and whose server is down."""
    data = {
        "id": "orders_pg",
        "source": {"type": "postgres", "dsn": f"postgresql://alice:${{PG_PASSWORD}}@127.0.0.1:{refused_port}/shop", "table": "orders"},
        "incremental": {"cursor_field": "updated_at"},
        "sink": {"type": "jsonl", "path": "./out"},
    }
    path = tmp_path / "orders.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    out = []
    for line in lines:
        obj = json.loads(line)  # every stderr line is one JSON object
        assert isinstance(obj, dict) and LOG_KEYS <= set(obj), line
        out.append(obj)
    return out


# -- item 2: --log-format json -----------------------------------------------------------------------------
def test_json_logs_one_object_a_line_with_pipeline_run_and_event(osmosis_cli, news_yaml):
    done = osmosis_cli("--log-format", "json", "-v", "run", news_yaml)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    logs = _json_lines(done.stderr)
    events = {e["event"]: e for e in logs}
    assert {"run_started", "run_succeeded"} <= set(events)
    for name in ("run_started", "run_succeeded"):
        assert events[name]["pipeline"] == "tech_news" and events[name]["run_id"] == summary["run_id"]
        assert events[name]["level"] == "info" and events[name]["time"].endswith("+00:00")
    assert "read 5" in events["run_succeeded"]["message"]


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_json_logs_of_a_failed_run_name_it_and_never_show_the_secret(osmosis_cli, secret_pg_yaml, debug):
    flags = ["--debug"] if debug else ["-v"]
    done = osmosis_cli("--log-format", "json", *flags, "run", secret_pg_yaml, env={"PG_PASSWORD": SECRET})
    assert done.returncode == 1
    assert SECRET not in done.stderr and SECRET not in done.stdout
    logs = _json_lines(done.stderr)
    errors = [e for e in logs if e["event"] == "error"]
    assert len(errors) == 1, logs  # the error is reported once
    error = errors[0]
    assert error["level"] == "error" and error["pipeline"] == "orders_pg" and error["run_id"]
    assert "nothing accepts connections" in error["message"] and "alice@127.0.0.1" in error["message"]
    failed = [e for e in logs if e["event"] == "run_failed"]
    assert failed and failed[0]["run_id"] == error["run_id"]
    if debug:
        traceback = [e for e in logs if e["event"] == "traceback"]
        assert traceback and "Traceback" in traceback[0]["message"]
    history = json.loads(osmosis_cli("history", "--json").stdout)
    assert history[0]["run_id"] == error["run_id"] and history[0]["status"] == "failed"
    assert SECRET not in json.dumps(history)


def test_text_logs_print_a_failed_runs_error_once(osmosis_cli, secret_pg_yaml):
    done = osmosis_cli("run", secret_pg_yaml, env={"PG_PASSWORD": SECRET})
    assert done.returncode == 1
    assert done.stderr.count("nothing accepts connections") == 1, done.stderr
    assert done.stderr.startswith("error: pipeline orders_pg: run ") and SECRET not in done.stderr
