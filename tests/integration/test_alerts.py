"""Alerts through the launcher: a real webhook receiver on loopback, a real feed server, the real CLI.

A failing job alerts once per failure streak (the consecutive failures are counted in the state store),
once more when it recovers; a slow or failing webhook is retried with a timeout and never fails a run.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from osmosis_beam.state.sqlite import SQLiteStateStore

ROOT = Path(__file__).resolve().parents[2]
FEED = (ROOT / "pipelines" / "feeds" / "tech_news.xml").read_bytes()
FEED_PASSWORD = "feed-pw-8Xq2"


class Receiver:
    """A loopback webhook: records every POST; ``fail_first`` answers 503 that many times; ``delay`` stalls."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.attempts = 0
        self.fail_first = 0
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.attempts += 1
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.attempts <= outer.fail_first:
                    status = 503
                else:
                    status = 204
                    outer.posts.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str = "/hook/T0KEN-abc") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def events(self) -> list[str]:
        return [p["body"]["event"] for p in self.posts]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _pipeline(tmp_path, feed_server, notify=None, pid="news") -> Path:
    host, port = feed_server.url("/feed.xml").split("//", 1)[1].split("/", 1)[0].split(":")
    data = {
        "id": pid,
        # The feed URL holds a password: alerts must never carry it.
        "source": {"type": "rss", "url": f"http://reader:{FEED_PASSWORD}@{host}:{port}/feed.xml"},
        "incremental": {"cursor_field": "published", "start": "2024-01-01T00:00:00Z"},
        "sink": {"type": "jsonl", "path": "./data"},
        "schedule": {"every": "1s"},
    }
    if notify is not None:
        data["notify"] = notify
    path = tmp_path / f"{pid}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _launch(home, *args, timeout=240):
    return subprocess.Popen(
        [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "launch", "--backoff", "1s", "--max-backoff", "1s", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
    )


def _runs(home, status=None):
    db = home / "state.db"
    if not db.exists():
        return []
    try:
        return [r for r in SQLiteStateStore(db).list_runs("news") if status is None or r.status == status]
    except Exception:  # noqa: BLE001 - the launcher may be creating the schema
        return []


def test_a_failing_job_alerts_once_then_on_recovery(tmp_path, home, feed_server, receiver):
    feed_server.set("/feed.xml", b"down for maintenance", status=500, content_type="text/plain")
    receiver.fail_first = 1  # the first delivery is refused: the alert is retried
    path = _pipeline(tmp_path, feed_server, notify={"webhook": receiver.url(), "timeout": "5s", "retries": 2})
    proc = _launch(home, path, "--max-runs", 5)
    try:
        deadline = time.monotonic() + 120
        while len(_runs(home, "failed")) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(_runs(home, "failed")) >= 3, proc.stderr.read() if proc.poll() is not None else "timed out"
        feed_server.set("/feed.xml", FEED, content_type="application/rss+xml")  # the feed is back
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err  # --max-runs exits 1 when one of its runs failed
    runs = list(reversed(_runs(home)))  # oldest first
    statuses = [r.status for r in runs]
    first_ok = statuses.index("succeeded")
    assert first_ok >= 3 and set(statuses[:first_ok]) == {"failed"} and len(runs) == 5
    # One alert for the whole failure streak, one for the recovery; none for the other runs.
    assert receiver.events() == ["failure", "recovery"], receiver.posts
    assert receiver.attempts == 3  # the refused first delivery was retried
    failure, recovery = (p["body"] for p in receiver.posts)
    assert failure["pipeline"] == "news" and failure["run_id"] == runs[0].run_id and failure["status"] == "failed"
    assert failure["consecutive_failures"] == 1 and "500" in failure["error"]
    assert failure["summary"]["status"] == "failed" and failure["text"].startswith("osmosis: pipeline news failed")
    assert recovery["run_id"] == runs[first_ok].run_id and recovery["summary"]["records_written"] == 5
    assert f"after {first_ok} failures in a row" in recovery["text"]
    for post in receiver.posts:
        assert post["headers"]["Content-Type"] == "application/json"
        assert FEED_PASSWORD not in json.dumps(post["body"])
    assert FEED_PASSWORD not in err and "T0KEN" not in err  # the webhook's token is not logged either
    job = SQLiteStateStore(home / "state.db").get_job("news")
    assert job.consecutive_failures == 0 and job.status == "succeeded"


def test_a_failing_webhook_never_fails_the_run(tmp_path, home, feed_server, receiver):
    feed_server.set("/feed.xml", FEED, content_type="application/rss+xml")
    receiver.delay = 3.0  # slower than the timeout: every attempt times out
    path = _pipeline(tmp_path, feed_server, notify={"webhook": receiver.url(), "on": ["success"], "timeout": "0.5s", "retries": 1})
    started = time.monotonic()
    proc = _launch(home, path, "--once")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert [r.status for r in _runs(home)] == ["succeeded"]
    assert receiver.attempts == 2  # tried twice, each cut off by the timeout (the receiver answers too late)
    assert "could not deliver the success alert" in err and "after 2 attempts" in err
    assert "T0KEN" not in err
    assert time.monotonic() - started < 120


def test_launch_notify_is_the_default_for_pipelines_without_one(tmp_path, home, feed_server, receiver):
    feed_server.set("/feed.xml", FEED, content_type="application/rss+xml")
    path = _pipeline(tmp_path, feed_server)
    proc = _launch(home, path, "--max-runs", 2, "--notify", receiver.url("/all"), "--notify-on", "every_run")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    runs = list(reversed(_runs(home)))
    assert receiver.events() == ["success", "success"]
    assert [p["body"]["run_id"] for p in receiver.posts] == [r.run_id for r in runs]
    assert all(p["path"] == "/all" for p in receiver.posts)


def test_notify_section_is_validated(tmp_path, feed_server, osmosis_cli):
    path = _pipeline(tmp_path, feed_server, notify={"webhook": "ftp://x", "on": ["failur"], "retries": -1})
    done = osmosis_cli("validate", path)
    assert done.returncode == 2
    assert "notify.webhook: must be an http:// or https:// URL" in done.stderr
    assert "notify.on: unknown event 'failur' (did you mean 'failure'?)" in done.stderr or "notify.on: unknown event 'failur'" in done.stderr
    assert "notify.retries: a whole number from 0 to 10, got -1" in done.stderr


def test_manual_runs_alert_like_scheduled_ones(tmp_path, home, feed_server, receiver, osmosis_cli):
    """`osmosis run` (from a system cron, say) counts in the same failure streak and sends the same alerts."""
    feed_server.set("/feed.xml", b"down", status=500, content_type="text/plain")
    path = _pipeline(tmp_path, feed_server, notify={"webhook": receiver.url(), "timeout": "5s", "retries": 1})
    outcomes = []
    for _ in range(2):
        done = osmosis_cli("run", path, "--quiet")
        outcomes.append(done.returncode)
        assert FEED_PASSWORD not in done.stderr and "T0KEN" not in done.stderr
    assert outcomes == [1, 1]
    assert receiver.events() == ["failure"]  # one alert for the streak of two
    job = SQLiteStateStore(home / "state.db").get_job("news")
    assert job.consecutive_failures == 2 and job.status == "failed"
    # --no-notify: the run still counts in the streak, but sends nothing.
    assert osmosis_cli("run", path, "--quiet", "--no-notify").returncode == 1
    assert SQLiteStateStore(home / "state.db").get_job("news").consecutive_failures == 3
    feed_server.set("/feed.xml", FEED, content_type="application/rss+xml")
    done = osmosis_cli("run", path, "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["status"] == "succeeded"
    assert receiver.events() == ["failure", "recovery"]
    failure, recovery = (p["body"] for p in receiver.posts)
    runs = list(reversed(_runs(home)))  # oldest first
    assert failure["run_id"] == runs[0].run_id and failure["consecutive_failures"] == 1 and "500" in failure["error"]
    assert recovery["run_id"] == runs[-1].run_id and "after 3 failures in a row" in recovery["text"]
    assert FEED_PASSWORD not in json.dumps(receiver.posts)
    job = SQLiteStateStore(home / "state.db").get_job("news")
    assert job.consecutive_failures == 0 and job.status == "succeeded"
