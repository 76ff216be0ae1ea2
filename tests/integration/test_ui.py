"""The dashboard in a real browser: `osmosis ui` in its own process, Debian's Chromium driven by Playwright.

What the pages show is checked against the state store; a pipeline is run from its page and the new run
appears; screenshots are kept under ``$OSMOSIS_TEST_ARTIFACTS`` (default ``tests/artifacts/``).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from osmosis_beam.core.timefmt import format_timestamp, utcnow
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.state.store import new_holder_id
from tests.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
SYNTH = "tests.integration.synthetic:SyntheticConnector"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SECRET = "hunter2-very-secret"
ARTIFACTS = Path(os.environ.get("OSMOSIS_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable("Playwright", f"the playwright package is not installed ({exc})")
    if not os.path.exists(CHROMIUM):
        unavailable("Chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as pw:
        try:
            instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000)
        except Exception as exc:  # noqa: BLE001 - the reason the browser cannot be had
            unavailable("Chromium", str(exc))
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(home: Path, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def get(url: str, **headers) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post(url: str, body: str, **headers) -> int:
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


class UI:
    def __init__(self, home: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "ui", "--port", str(self.port), *args],
            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self) -> "UI":
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"osmosis ui exited: {self.proc.communicate()[1]}")
            try:
                return get(self.url + "/healthz")[0] in (200, 401)
            except OSError:
                return False

        wait_for(up, 30, "the dashboard to answer")
        return self

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture
def populated(tmp_path):
    """A home with a pipeline that has dead letters and a secret in its source, and one that fails."""
    home = tmp_path / "home"

    def write(pid: str, source: dict, **extra) -> Path:
        path = tmp_path / f"{pid}.yaml"
        path.write_text(yaml.safe_dump({
            "id": pid, "source": {"type": SYNTH, **source},
            "sink": {"type": "jsonl", "path": str(tmp_path / f"out_{pid}")}, "schedule": {"every": "1h"}, **extra,
        }))
        return path

    orders = write("orders", {"count": 20, "password": SECRET, "first": "2024-01-01T00:00:00Z"},
                   steps=[{"map": {"ratio": "100 / (id % 5)"}}], dead_letter={"max_ratio": 0.5})
    broken = write("broken", {"count": 5, "fail_after": 0, "password": SECRET})
    first = cli(home, "run", orders)
    assert first.returncode == 0, first.stderr
    assert cli(home, "run", broken).returncode == 1
    store = SQLiteStateStore(home / "state.db")
    return home, store, orders


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


def test_click_through_pages_and_run_a_pipeline_from_its_page(populated, page):
    home, store, _ = populated
    ui = UI(home).wait()
    try:
        page.goto(ui.url + "/")
        rows = page.locator("#pipelines tbody tr")
        assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.pipeline)")) == ["broken", "orders"]
        orders_row = page.locator('tr[data-pipeline="orders"]')
        assert orders_row.locator(".source").inner_text() == SYNTH and orders_row.locator(".sink").inner_text() == "jsonl"
        assert "succeeded" in orders_row.inner_text() and "every 1h" in orders_row.inner_text()
        assert "failed" in page.locator('tr[data-pipeline="broken"]').inner_text()
        assert page.locator("svg[aria-label='freshness per pipeline'] rect").count() == 1  # broken has no watermark
        assert SECRET not in page.content()
        shot(page, "pipelines")

        page.click("text=orders")
        assert page.locator("#watermark").inner_text() == format_timestamp(store.get_watermark("orders").value)
        assert '"password": "***"' in page.locator("#source-config").inner_text()
        assert SECRET not in page.content()
        assert page.locator("svg[aria-label='records written per run'] circle").count() == 1

        page.click("#run-now")
        assert "run started" in page.locator("#flash").inner_text()
        wait_for(lambda: len(store.query_runs("orders", status="succeeded")) == 2, 60, "the run started from the page")
        newest = store.query_runs("orders")[0]

        def shown():
            page.reload()
            return (page.locator(f'tr[data-run="{newest.run_id}"]').count() == 1
                    and f"run {newest.run_id} succeeded" in page.locator("#last-action").inner_text())

        wait_for(shown, 20, "the new run and its outcome on the pipeline page")
        assert page.locator("svg[aria-label='duration per run'] circle").count() == 2
        shot(page, "pipeline")

        # The runs page, filtered; then one run with its whole error; then one with its dead letters.
        page.click("header >> text=Runs")
        assert page.locator("#total").inner_text() == f"{store.count_runs()} runs"
        page.select_option("#status-filter", "failed")
        page.click("#apply")
        failed = store.query_runs(status="failed")
        assert page.locator("table.runs tbody tr").evaluate_all("rs => rs.map(r => r.dataset.run)") == [r.run_id for r in failed]
        page.click(f'tr[data-run="{failed[0].run_id}"] a')
        assert page.locator("#error").inner_text() == failed[0].error and "synthetic source broke" in failed[0].error
        assert SECRET not in page.content()

        first = store.query_runs("orders")[-1]
        page.goto(f"{ui.url}/runs/{first.run_id}")
        assert page.locator("#counts").inner_text() == f"{first.records_read} / {first.records_written} / {first.dead_letter}"
        assert first.dead_letter == 4 and page.locator("#dead-letters tbody tr").count() == 4
        assert "ZeroDivisionError" in page.locator("#dead-letters").inner_text()
        assert page.locator("#window").inner_text() == f"[-inf, {format_timestamp(first.window.hi)})"
        shot(page, "run")
    finally:
        ui.stop()


def test_pause_resume_lease_held_and_cross_site_posts(populated, page):
    home, store, _ = populated
    ui = UI(home).wait()
    try:
        page.goto(ui.url + "/pipelines/orders")
        page.click("#pause")
        assert "paused" in page.locator("#flash").inner_text() and page.locator("#status").inner_text() == "paused"
        assert store.paused_pipelines() == {"orders"}
        page.click("#resume")
        assert store.paused_pipelines() == set() and page.locator("#status").inner_text() == "succeeded"

        holder = new_holder_id()  # this process: alive, so its lease is live
        assert store.acquire_lease("orders", holder, 60)
        before = store.count_runs("orders")
        page.click("#run-now")
        assert "is running now" in page.locator("#flash").inner_text() and holder in page.locator("#flash").inner_text()
        store.release_lease("orders", holder)
        assert store.count_runs("orders") == before

        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        action = ui.url + "/pipelines/orders/pause"
        assert post(action, f"csrf={csrf}", Origin="http://evil.example") == 403
        assert post(action, "csrf=wrong", Origin=ui.url) == 403
        assert post(action, f"csrf={csrf}") == 403  # neither Origin nor Referer
        assert store.paused_pipelines() == set()
        assert get(ui.url + "/", Host="rebind.example")[0] == 421
    finally:
        ui.stop()


def test_thousands_of_runs_page_fast(populated, page):
    home, store, _ = populated
    start = utcnow() - dt.timedelta(days=30)
    rows = [(f"bulk-{i:05d}", "orders" if i % 3 else "broken", "failed" if i % 7 == 0 else "succeeded",
             format_timestamp(start + dt.timedelta(minutes=i)), format_timestamp(start + dt.timedelta(minutes=i, seconds=2)),
             i, i) for i in range(5000)]
    with sqlite3.connect(home / "state.db") as conn:
        conn.executemany("INSERT INTO runs (run_id, pipeline_id, status, started_at, finished_at, records_read, "
                         "records_written) VALUES (?,?,?,?,?,?,?)", rows)
    ui = UI(home).wait()
    try:
        began = time.monotonic()
        page.goto(ui.url + "/runs?pipeline=orders&status=succeeded&page=40")
        assert time.monotonic() - began < 3
        expected = store.query_runs("orders", status="succeeded", limit=50, offset=39 * 50)
        assert page.locator("table.runs tbody tr").evaluate_all("rs => rs.map(r => r.dataset.run)") == [r.run_id for r in expected]
        assert page.locator("#total").inner_text() == f"{store.count_runs('orders', status='succeeded')} runs"
        page.click("#older")
        assert "page=41" in page.url and "page 41 of" in page.locator(".pager").inner_text()
        began = time.monotonic()
        page.goto(ui.url + "/pipelines/orders")
        assert time.monotonic() - began < 3
        assert page.locator("svg[aria-label='records written per run'] circle").count() == 100  # the latest 100
    finally:
        ui.stop()


def test_binding_beyond_loopback_needs_a_token(populated, page):
    home, _, _ = populated
    refused = cli(home, "ui", "--host", "0.0.0.0", "--port", str(free_port()), timeout=30)
    assert refused.returncode == 2 and "needs a token" in refused.stderr
    ui = UI(home, "--host", "0.0.0.0", "--token", "s3cret-token").wait()
    try:
        assert get(ui.url + "/")[0] == 401
        assert get(ui.url + "/", Authorization="Bearer s3cret-token")[0] == 200
        page.goto(ui.url + "/runs?token=s3cret-token")
        assert page.url == ui.url + "/runs" and page.locator("h1").inner_text() == "Runs"  # the cookie carries it now
        page.goto(ui.url + "/")
        assert page.locator("#pipelines").count() == 1
    finally:
        ui.stop()
