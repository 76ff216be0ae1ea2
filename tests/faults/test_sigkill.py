"""SIGKILL at random moments: ``osmosis run`` killed again and again while a writer keeps inserting, then
re-run to the end; every source row must arrive exactly once (jsonl, postgres upsert, postgres append).

A kill may land anywhere: before the window is fixed, in the read, in the Beam job, between the publish and
the commit (the next start repairs it), or after the commit. The seed of the random kill times is printed,
and ``OSMOSIS_FAULT_SEED`` replays a failing sequence.
"""
from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest
import yaml

from osmosis_beam.io.files.jsonl import read_jsonl_dir

ROOT = Path(__file__).resolve().parents[2]
PREFILL = 60_000
KILLS = 3


class Writer(threading.Thread):
    """Inserts rows into ``events`` (committed at once, stamped with the clock) until stopped."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.stop_event, self.inserted, self.error = dsn, threading.Event(), 0, None

    def run(self) -> None:
        try:
            conn = psycopg2.connect(self.dsn, connect_timeout=10)
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self.stop_event.wait(0.05):
                    cur.execute(
                        "INSERT INTO events (payload, updated_at) SELECT md5(random()::text), clock_timestamp() "
                        "FROM generate_series(1, 60)"
                    )
                    self.inserted += 60
            conn.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)
        assert self.error is None, self.error


def _osmosis(home: Path, pipeline: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "run", str(pipeline)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT), start_new_session=True,
    )


@pytest.mark.parametrize("mode", ["jsonl", "postgres-upsert", "postgres-append"])
def test_sigkill_at_random_points_delivers_every_row_once(tmp_path, pg_dsn, mode, faults):
    seed = int(os.environ.get("OSMOSIS_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"kill seed {seed} (OSMOSIS_FAULT_SEED={seed} replays it)")
    rng = random.Random(seed)
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE events (id bigserial PRIMARY KEY, payload text NOT NULL, updated_at timestamptz NOT NULL);"
            "CREATE INDEX ON events (updated_at);"
            "INSERT INTO events (payload, updated_at) SELECT md5(g::text), now() - interval '1 hour' * random() "
            f"FROM generate_series(1, {PREFILL}) g"
        )
    sink = {
        "jsonl": {"type": "jsonl", "path": "out"},
        "postgres-upsert": {"type": "postgres", "dsn": pg_dsn, "table": "sink_events", "key": ["id"]},
        "postgres-append": {"type": "postgres", "dsn": pg_dsn, "table": "sink_events", "mode": "append"},
    }[mode]
    pipeline = tmp_path / "events.yaml"
    pipeline.write_text(yaml.safe_dump({
        "id": "events",
        "source": {"type": "postgres", "dsn": pg_dsn, "table": "public.events"},
        "incremental": {"cursor_field": "updated_at", "safety_lag": "2s"},  # the writer commits at once
        "read": {"splits": 2, "batch_size": 2000},
        "sink": sink,
    }))
    home = tmp_path / "home"
    writer = Writer(pg_dsn)
    writer.start()
    outcomes = collections.Counter()
    try:
        for _ in range(KILLS):
            proc = _osmosis(home, pipeline)
            time.sleep(rng.uniform(0.5, 7.0))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                faults.injected()
                outcomes["killed"] += 1
            _, err = proc.communicate(timeout=120)
            outcomes[proc.returncode] += 1
            assert proc.returncode in (0, -signal.SIGKILL), err
    finally:
        writer.stop()
    time.sleep(2.5)  # past the safety lag: the next window covers every row the writer committed
    for attempt in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "run", str(pipeline)],
            capture_output=True, text=True, timeout=300, cwd=str(ROOT),
        )
        assert done.returncode == 0, done.stderr
        if '"records_read": 0' in done.stdout.splitlines()[-1]:
            break

    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM events")
        source = sorted(r[0] for r in cur.fetchall())
        if mode == "jsonl":
            delivered = [r["id"] for r in read_jsonl_dir(tmp_path / "out")]
            assert not (tmp_path / "out" / "_staging").exists() or not any((tmp_path / "out" / "_staging").iterdir())
        else:
            cur.execute("SELECT id FROM sink_events")
            delivered = [r[0] for r in cur.fetchall()]
            cur.execute(
                "SELECT count(*) FROM events e JOIN sink_events s USING (id) WHERE e.payload IS DISTINCT FROM s.payload"
            )
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT count(*) FROM pg_class WHERE starts_with(relname, '_osmosis_stage_')")
            assert cur.fetchone()[0] == 0, "a stage table was left behind"
    counts = collections.Counter(delivered)
    doubled = [i for i, n in counts.items() if n > 1]
    missing = sorted(set(source) - set(counts))
    assert not doubled and not missing, (
        f"seed {seed}: {len(doubled)} doubled (e.g. {doubled[:5]}), {len(missing)} missing (e.g. {missing[:5]}); "
        f"outcomes {dict(outcomes)}"
    )
    assert len(source) >= PREFILL + writer.inserted and writer.inserted > 0
    print(f"{mode}: {len(source):,} rows once each; outcomes {dict(outcomes)}")
    faults.checked(len(source))
