"""Every example pipeline in pipelines/ is valid as shipped (with its environment variables set)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "ORDERS_DSN": "postgresql://reader:pw@127.0.0.1:1/shop",
    "REPORTING_DSN": "postgresql://writer:pw@127.0.0.1:1/reporting",
    "EVENTS_MONGO_URI": "mongodb://reader:pw@127.0.0.1:1/?authSource=admin",
}


def test_every_example_pipeline_validates():
    import os

    files = sorted(str(p) for p in (ROOT / "pipelines").glob("*.yaml"))
    assert len(files) >= 4
    out = subprocess.run([sys.executable, "-m", "osmosis_beam.cli", "validate", *files], cwd=ROOT,
                         env={**os.environ, **ENV}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": ok") == len(files)


def test_unset_secret_env_is_reported_at_its_path():
    import os

    env = {k: v for k, v in os.environ.items() if k not in ENV}
    out = subprocess.run([sys.executable, "-m", "osmosis_beam.cli", "validate", str(ROOT / "pipelines" / "orders_postgres.yaml")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "source.dsn: environment variable ORDERS_DSN is not set" in out.stderr
    assert "sink.dsn: environment variable REPORTING_DSN is not set" in out.stderr
