"""The ``osmosis`` CLI contract, run as a real subprocess against a loopback feed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore

ROOT = Path(__file__).resolve().parents[2]
FEED = (ROOT / "pipelines" / "feeds" / "tech_news.xml").read_bytes()
SUMMARY_KEYS = {"pipeline", "run_id", "status", "records_read", "records_written", "dead_letter", "window"}


@pytest.fixture
def news_yaml(tmp_path, feed_server):
    feed_server.set("/feed.xml", FEED, content_type="application/rss+xml", etag='"v1"')
    data = {
        "id": "tech_news",
        "source": {"type": "rss", "url": feed_server.url("/feed.xml")},
        "incremental": {"cursor_field": "published", "start": "2024-01-01T00:00:00Z"},
        "sink": {"type": "jsonl", "path": "./data/news"},
        "schedule": {"every": "15m"},
    }
    path = tmp_path / "news.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_version():
    out = subprocess.run([sys.executable, "-m", "osmosis_beam.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("osmosis-beam ")


def test_run_prints_json_summary_last_and_second_run_reads_nothing(osmosis_cli, news_yaml, tmp_path, feed_server):
    first = osmosis_cli("run", news_yaml)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(summary) == SUMMARY_KEYS
    assert summary["pipeline"] == "tech_news" and summary["status"] == "succeeded"
    assert summary["records_read"] == summary["records_written"] == 5
    assert summary["window"]["lo"] == "2024-01-01T00:00:00+00:00" and summary["window"]["hi"].endswith("+00:00")
    records = list(read_jsonl_dir(tmp_path / "data" / "news"))
    assert {r["id"] for r in records} == {f"tech-news-000{i}" for i in range(1, 6)}
    assert any("日本語" in (r["title"] or "") for r in records)
    second = osmosis_cli("run", news_yaml)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1])["records_read"] == 0
    assert feed_server.hits("/feed.xml")[-1]["headers"].get("If-None-Match") == '"v1"'

    history = osmosis_cli("history", "--json")
    runs = json.loads(history.stdout)
    assert len(runs) == 2 and runs[0]["run_id"] == json.loads(second.stdout.strip().splitlines()[-1])["run_id"]
    assert set(runs[0]) >= SUMMARY_KEYS | {"started_at", "finished_at", "error"}
    table = osmosis_cli("history", "--pipeline", "tech_news")
    assert table.returncode == 0 and "succeeded" in table.stdout


def test_failed_run_exits_nonzero_with_short_error_and_history(osmosis_cli, tmp_path, feed_server):
    data = {"id": "broken", "source": {"type": "rss", "url": feed_server.url("/missing.xml")},
            "sink": {"type": "jsonl", "path": "out"}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    out = osmosis_cli("run", path)
    assert out.returncode == 1
    assert "404" in out.stderr and "Traceback" not in out.stderr
    runs = json.loads(osmosis_cli("history", "--json").stdout)
    assert runs[0]["status"] == "failed" and "404" in runs[0]["error"]


def test_validate_lists_every_error(osmosis_cli, tmp_path, news_yaml):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "id": "Bad Id",
        "source": {"type": "rss"},
        "sink": {"type": "jsonl"},
        "schedule": {"cron": "61 * * * *"},
        "incremental": {"lookback": "soon"},
    }))
    out = osmosis_cli("validate", news_yaml, bad)
    assert out.returncode == 2
    assert f"{news_yaml}: ok" in out.stdout
    for expected in ("source.url: required", "sink.path: required", "schedule.cron: invalid cron expression '61 * * * *'",
                     "id: 'Bad Id' is invalid", "incremental.lookback: invalid duration 'soon'"):
        assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_connector_lists_known(osmosis_cli, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"id": "x", "source": {"type": "rsss", "url": "http://x"}, "sink": {"type": "jsonl", "path": "o"}}))
    out = osmosis_cli("validate", path)
    assert out.returncode == 2
    assert "unknown connector 'rsss' (did you mean 'rss'?); known:" in out.stderr and "postgres" in out.stderr


def test_test_and_schema_commands(osmosis_cli, news_yaml, tmp_path):
    ok = osmosis_cli("test", news_yaml)
    assert ok.returncode == 0 and "5 entries" in ok.stdout
    schema = json.loads(osmosis_cli("schema", news_yaml).stdout)
    assert {f["name"] for f in schema["fields"]} >= {"id", "title", "published", "feed_url"}
    data = yaml.safe_load(news_yaml.read_text())
    data["source"]["url"] = data["source"]["url"].replace("/feed.xml", "/nothing.xml")
    news_yaml.write_text(yaml.safe_dump(data))
    bad = osmosis_cli("test", news_yaml)
    assert bad.returncode == 1 and "404" in bad.stderr


def test_connectors_lists_types(osmosis_cli):
    out = osmosis_cli("connectors", "--json")
    data = json.loads(out.stdout)
    assert {"rss", "postgres", "mongodb"} <= {c["name"] for c in data["connectors"]}
    assert "jsonl" in {s["name"] for s in data["sinks"]}
    assert "filter" in {s["name"] for s in data["steps"]}


def test_sources_are_persisted_with_secrets_redacted(osmosis_cli, tmp_path, feed_server, home):
    feed_server.set("/feed.xml", FEED)
    data = {
        "id": "secretive",
        "source": {"type": "rss", "url": feed_server.url("/feed.xml").replace("http://", "http://reader:hunter22@"),
                   "headers": {"Authorization": "${FEED_TOKEN}", "X-Api-Key": "plain-key-123"}},
        "sink": {"type": "jsonl", "path": "out"},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    out = osmosis_cli("run", path, env={"FEED_TOKEN": "tok-abcdef"})
    assert out.returncode == 0, out.stderr
    listed = osmosis_cli("sources", "list")
    assert "secretive" in listed.stdout
    shown = osmosis_cli("sources", "show", "secretive")
    assert shown.returncode == 0
    for secret in ("hunter22", "tok-abcdef", "plain-key-123"):
        assert secret not in shown.stdout
        assert secret not in (home / "state.db").read_bytes().decode("utf-8", "replace")
    config = json.loads(shown.stdout)["config"]
    assert config["headers"]["Authorization"] == "${FEED_TOKEN}"
    assert config["headers"]["X-Api-Key"] == "***"
    assert "reader:***@" in config["url"]
    assert osmosis_cli("sources", "remove", "secretive").returncode == 0
    missing = osmosis_cli("sources", "show", "secretive")
    assert missing.returncode == 2 and "unknown source 'secretive'" in missing.stderr


def test_lease_held_exits_3(osmosis_cli, news_yaml, home):
    store = SQLiteStateStore(home / "state.db")
    assert store.acquire_lease("tech_news", f"elsewhere:{os.getpid()}:x", ttl=120)
    out = osmosis_cli("run", news_yaml)
    assert out.returncode == 3 and "holds its lease" in out.stderr


def test_beam_args_pass_through(osmosis_cli, news_yaml):
    out = osmosis_cli("run", news_yaml, "--", "--direct_num_workers=1")
    assert out.returncode == 0, out.stderr


def test_demo_script_runs_twice(tmp_path):
    env = dict(os.environ, OSMOSIS_HOME=str(tmp_path / "home"), DEMO_OUTPUT=str(tmp_path / "out"))
    first = subprocess.run(["./run_local.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    lines = [l for l in first.stdout.splitlines() if l.startswith("{")]
    assert json.loads(lines[-1])["records_written"] == 5
    second = subprocess.run(["./run_local.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    lines = [l for l in second.stdout.splitlines() if l.startswith("{")]
    assert json.loads(lines[-1])["records_read"] == 0
    assert "tech_news" in second.stdout and "succeeded" in second.stdout  # the history table
    assert len(list(read_jsonl_dir(tmp_path / "out"))) == 5
