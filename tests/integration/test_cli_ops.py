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


# -- item 1: live progress -------------------------------------------------------------------------------
SLOW_ROWS = 1500


@pytest.fixture
def slow_pg_yaml(tmp_path, pg_dsn):
    """A postgres pipeline whose rows come slowly (a server-side function sleeps per row), spread evenly
    over the window: [now - SLOW_ROWS s, now - 1 s)."""
    from tests.integration.pg_support import execute

    execute(
        pg_dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric, updated_at timestamptz NOT NULL)",
        "CREATE INDEX ON orders (updated_at)",
        f"INSERT INTO orders SELECT i, i * 1.5, date_trunc('second', now()) - interval '{SLOW_ROWS} seconds' + i * interval '1 second' "
        f"FROM generate_series(0, {SLOW_ROWS - 2}) AS i",
        "CREATE FUNCTION slow(x int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN x; END $$",
    )
    from tests.integration.pg_support import fetch

    # The first row's own time, not the clock's: a second that ticks between the INSERT and here would put it out.
    [(start,)] = fetch(pg_dsn, "SELECT min(updated_at) FROM orders")
    data = {
        "id": "slow_orders",
        "source": {"type": "postgres", "dsn": pg_dsn, "query": "SELECT id, slow(id) AS n, total, updated_at FROM orders", "fetch_size": 50},
        "incremental": {"cursor_field": "updated_at", "start": start.isoformat(), "safety_lag": "0s"},
        # The typed path: on the zero-decode path this slow query's rows reached the worker in one burst at
        # the end (the share stayed 0 until then); see the closing note of issue 13.
        "read": {"splits": 1, "batch_size": 50, "path": "typed"},
        "sink": {"type": "jsonl", "path": "./out"},
    }
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_progress_lines_while_a_slow_run_goes(osmosis_cli, slow_pg_yaml):
    done = osmosis_cli("--log-format", "json", "run", slow_pg_yaml, "--progress-every", "0.5s")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])  # the summary stays the last line of stdout
    assert summary["records_read"] == summary["records_written"] == SLOW_ROWS - 1
    progress = [e for e in _json_lines(done.stderr) if e["event"] == "progress"]
    assert len(progress) >= 3, done.stderr
    for e in progress:
        assert e["pipeline"] == "slow_orders" and e["run_id"] == summary["run_id"]
        assert {"records_read", "records_written", "records_per_second", "elapsed_seconds", "share", "eta_seconds"} <= set(e)
    shares = [e["share"] for e in progress]
    reads = [e["records_read"] for e in progress]
    assert shares == sorted(shares) and reads == sorted(reads)  # monotone
    assert 0 < shares[-1] <= 1 and shares[0] < shares[-1]
    moving = [e for e in progress if 0 < e["share"] < 0.95]
    assert moving, progress
    etas = [e["eta_seconds"] for e in moving]
    assert all(eta is not None and eta >= 0 for eta in etas)
    assert etas[-1] <= etas[0]  # the estimate comes down as the window is read
    # The share tracks the records: rows are spread evenly over the window.
    for e in moving:
        assert abs(e["share"] - e["records_read"] / SLOW_ROWS) < 0.1, e
    assert all(e["records_per_second"] > 0 for e in progress if e["records_read"])


def test_progress_of_a_first_run_over_old_rows_follows_the_records(osmosis_cli, tmp_path, pg_dsn):
    """A first run (no start: the window opens at the oldest row) up to now over rows two years old: the
    share is counted over the rows' own span (the source's smallest and largest cursor), so it grows as they
    are read, instead of staying near 0% until the end with an ETA of days."""
    from tests.integration.pg_support import execute

    rows = 1000
    execute(
        pg_dsn,
        "CREATE TABLE old_orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL)",
        f"INSERT INTO old_orders SELECT i, date_trunc('second', now()) - interval '730 days' + i * interval '1 second' "
        f"FROM generate_series(1, {rows}) AS i",
        "CREATE OR REPLACE FUNCTION slow(x int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN x; END $$",
    )
    data = {
        "id": "old_orders",
        "source": {"type": "postgres", "dsn": pg_dsn, "query": "SELECT id, slow(id) AS n, updated_at FROM old_orders", "fetch_size": 50},
        "incremental": {"cursor_field": "updated_at", "safety_lag": "0s"},
        "read": {"splits": 1, "batch_size": 50, "path": "typed"},
        "sink": {"type": "jsonl", "path": "./out"},
    }
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    done = osmosis_cli("--log-format", "json", "run", path, "--progress-every", "0.5s")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["records_read"] == rows
    progress = [e for e in _json_lines(done.stderr) if e["event"] == "progress"]
    moving = [e for e in progress if 0 < e["records_read"] < rows]
    assert moving, done.stderr
    for e in moving:
        assert abs(e["share"] - e["records_read"] / rows) < 0.1, e
        assert e["eta_seconds"] is not None and e["eta_seconds"] < 600, e


def test_progress_as_text_lines_and_quiet(osmosis_cli, slow_pg_yaml, tmp_path):
    quiet = osmosis_cli("run", slow_pg_yaml, "--quiet", "--full-refresh")
    assert quiet.returncode == 0, quiet.stderr
    assert "progress" not in quiet.stderr and quiet.stderr.strip() == ""
    assert json.loads(quiet.stdout.strip().splitlines()[-1])["records_read"] == SLOW_ROWS - 1
    text = osmosis_cli("run", slow_pg_yaml, "--progress-every", "0.5s", "--full-refresh")
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stderr.splitlines() if " progress: " in line]
    assert lines, text.stderr
    assert all("read" in line and "written" in line and "/s)" in line and "elapsed" in line for line in lines)
    assert any("% of the window, ETA " in line for line in lines)


def test_progress_on_a_terminal_is_one_live_line(home, slow_pg_yaml):
    """stderr on a real pseudo-terminal: the progress line is rewritten in place, then cleared."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "-v", "run", str(slow_pg_yaml)],
            stdout=subprocess.PIPE, stderr=slave, cwd=str(ROOT), env=dict(os.environ),
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(master)
    assert proc.returncode == 0
    terminal = b"".join(chunks).decode("utf-8", "replace")
    updates = terminal.split("\r\x1b[K")
    shown = [u for u in updates if u.startswith("slow_orders: ")]
    assert len(shown) >= 3, terminal  # rewritten in place, about twice a second
    assert "\n" not in "".join(shown)  # one line, rewritten in place, never scrolling
    # Log lines (-v) never land at the end of the live line: it is cleared before each one.
    import re

    assert re.search(r"(elapsed|ETA \d+:\d\d)\d\d:\d\d:\d\d (INFO|WARNING)", terminal) is None, terminal
    assert "INFO osmosis_beam.sync.attempt: pipeline slow_orders: run" in terminal
    assert any("% of the window, ETA" in u for u in shown)
    assert json.loads(out.decode().strip().splitlines()[-1])["records_read"] == SLOW_ROWS - 1


# -- item 7: CLI rough edges ---------------------------------------------------------------------------------
def test_run_help_shows_beam_args_and_where_global_flags_go(osmosis_cli):
    done = osmosis_cli("run", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: osmosis [GLOBAL FLAGS] run PIPELINE.yaml")
    assert "[-- BEAM_ARGS...]" in done.stdout and "global flags (before or after the command)" in done.stdout
    assert "--job_endpoint=localhost:8099" in done.stdout


def test_global_flags_after_the_command(tmp_path, news_yaml, osmosis_cli):
    other = tmp_path / "other_home"
    assert osmosis_cli("--home", other, "run", news_yaml, "--quiet").returncode == 0  # run creates its home
    after = osmosis_cli("history", "--home", other, "--json")  # --home after the command wins
    assert after.returncode == 0, after.stderr
    assert [r["pipeline"] for r in json.loads(after.stdout)] == ["tech_news"]
    default = osmosis_cli("history", "--json")  # the fixture's own home: nothing ran there
    assert json.loads(default.stdout) == []
    logs = osmosis_cli("jobs", "--log-format", "json", "--home", tmp_path / "nowhere")
    assert logs.returncode == 2 and json.loads(logs.stderr.strip())["event"] == "error"


def test_a_mistyped_home_is_an_error_not_a_new_home(tmp_path, osmosis_cli):
    typo = tmp_path / "typo"
    for argv in (["history"], ["jobs"], ["state", "show", "x"], ["sources", "list"]):
        done = osmosis_cli(*argv, home_dir=typo)
        assert done.returncode == 2, (argv, done.stderr)
        assert f"no osmosis home at {typo}" in done.stderr and "init" in done.stderr
        assert not typo.exists()
    created = osmosis_cli("init", home_dir=typo)
    assert created.returncode == 0 and (typo / "state.db").is_file()
    assert osmosis_cli("history", home_dir=typo).stdout.strip() == "no runs yet"


def test_connectors_print_plain_text(osmosis_cli):
    done = osmosis_cli("connectors")
    assert done.returncode == 0
    assert "``" not in done.stdout and ":class:" not in done.stdout
    assert "dedupe: {key: [id]}" in done.stdout


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_expression_and_selector_mistakes_say_what_and_where(tmp_path, osmosis_cli):
    bad = _write(tmp_path, "bad.yaml", {
        "id": "bad", "source": {"type": "web", "url": "http://127.0.0.1:9/", "item_selector": "div.item",
                                "fields": {"link": "a::atr(href)", "title": "h2::txt"}},
        "steps": [{"map": {"a": "1 +", "b": "x ==== 2"}}], "sink": {"type": "jsonl", "path": "out"},
    })
    done = osmosis_cli("validate", bad)
    assert done.returncode == 2
    err = done.stderr
    assert "steps[1] (map): a: invalid Python expression '1 +': it ends too early: something is missing after '1 +'" in err
    assert "b: invalid Python expression 'x ==== 2': invalid syntax at column 5, at '== 2'" in err
    assert "column 0" not in err
    assert "source.fields.link: invalid CSS selector 'a::atr(href)'" in err and "did you mean a::attr(href)?" in err
    assert "source.fields.title" in err and "did you mean h2::text?" in err


def test_validate_offline_and_json(tmp_path, osmosis_cli):
    env_only = _write(tmp_path, "env.yaml", {
        "id": "orders", "source": {"type": "postgres", "dsn": "${ORDERS_DSN}", "table": "orders"},
        "incremental": {"cursor_field": "updated_at"}, "sink": {"type": "jsonl", "path": "out"},
        "read": {"splits": "${SPLITS}"},
    })
    broken = _write(tmp_path, "broken.yaml", {
        "id": "orders", "source": {"type": "postgres", "dsn": "${ORDERS_DSN}", "tabel": "orders"},
        "sink": {"type": "jsonl", "path": "out"}, "schedule": {"cron": "61 * * * *"},
    })
    online = osmosis_cli("validate", env_only)
    assert online.returncode == 2 and "environment variable ORDERS_DSN is not set" in online.stderr
    offline = osmosis_cli("validate", "--offline", env_only)
    assert offline.returncode == 0, offline.stderr
    assert "structure ok (offline)" in offline.stdout
    assert "not checked: source.dsn (${ORDERS_DSN} is not set)" in offline.stdout
    assert "not checked: read.splits (${SPLITS} is not set)" in offline.stdout
    still_bad = osmosis_cli("validate", "--offline", broken)
    assert still_bad.returncode == 2
    assert "source.tabel: unknown option" in still_bad.stderr and "schedule.cron" in still_bad.stderr
    assert "ORDERS_DSN" not in still_bad.stderr
    both = osmosis_cli("validate", "--offline", "--json", env_only, broken)
    assert both.returncode == 2
    results = json.loads(both.stdout)
    assert [r["valid"] for r in results] == [True, False]
    assert {u["variable"] for u in results[0]["unchecked"]} == {"ORDERS_DSN", "SPLITS"}
    assert any(p.startswith("source.tabel: unknown option") for p in results[1]["problems"])
    full = osmosis_cli("validate", "--json", env_only, env={"ORDERS_DSN": "postgresql://u@127.0.0.1/db", "SPLITS": "2"})
    assert full.returncode == 0, full.stderr
    [ok] = json.loads(full.stdout)
    assert ok == {"path": str(env_only), "valid": True, "pipeline": "orders", "source": "postgres", "steps": 0,
                  "sink": "jsonl", "problems": [], "unchecked": []}


def test_spec_prints_json_schema_that_checks_pipeline_files(tmp_path, osmosis_cli):
    import jsonschema

    whole = osmosis_cli("spec")
    assert whole.returncode == 0, whole.stderr
    schema = json.loads(whole.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for example in sorted((ROOT / "pipelines").glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(example.read_text()))) == [], example
    wrong = {"id": "x", "source": {"type": "postgres", "dsn": "${DSN}", "tabel": "t"}, "sink": {"type": "jsonl", "path": "o"},
             "read": {"splits": 0}, "steps": [{"filter": "a > 1"}, {"mapp": {"a": "1"}}]}
    messages = [e.message for e in validator.iter_errors(wrong)]
    assert messages, "a wrong pipeline must not validate"
    assert jsonschema.Draft202012Validator(schema).is_valid(
        {"id": "x", "source": {"type": "postgres", "dsn": "${DSN}", "table": "t", "fetch_size": "${FETCH}"},
         "sink": {"type": "jsonl", "path": "o"}, "steps": [{"map": {"a": "1"}, "on_error": "fail"}, "flatten"]})
    pg = osmosis_cli("spec", "postgres", "--kind", "connector")
    one = json.loads(pg.stdout)
    assert one["title"] == "postgres connector" and "dsn" in one["required"]
    assert one["properties"]["dsn"]["writeOnly"] is True
    assert one["properties"]["fetch_size"]["default"] == 10000
    assert one["additionalProperties"] is False
    both = json.loads(osmosis_cli("spec", "postgres").stdout)  # a connector and a sink
    assert {s["title"] for s in both["anyOf"]} == {"postgres connector", "postgres sink"}
    unknown = osmosis_cli("spec", "postgress")
    assert unknown.returncode == 2 and "did you mean 'postgres'?" in unknown.stderr


def test_launcher_logs_progress_of_its_runs(osmosis_cli, slow_pg_yaml):
    """The launcher's runs log progress lines too (never a live line: runs share its stderr); --quiet: none."""
    data = yaml.safe_load(slow_pg_yaml.read_text())
    data["schedule"] = {"every": "1h"}
    slow_pg_yaml.write_text(yaml.safe_dump(data))
    done = osmosis_cli("--log-format", "json", "launch", slow_pg_yaml, "--once", "--progress-every", "0.5s")
    assert done.returncode == 0, done.stderr
    logs = _json_lines(done.stderr)
    progress = [e for e in logs if e["event"] == "progress"]
    assert len(progress) >= 2 and all(e["pipeline"] == "slow_orders" for e in progress)
    assert [e["share"] for e in progress] == sorted(e["share"] for e in progress)
    fresh = slow_pg_yaml.parent / "fresh_home"  # a home where the pipeline is due again
    quiet = osmosis_cli("launch", slow_pg_yaml, "--once", "--quiet", "--progress-every", "1s", home_dir=fresh)
    assert quiet.returncode == 0 and " progress: " not in quiet.stderr
    assert "succeeded" in quiet.stderr  # it ran: the launcher's end line
