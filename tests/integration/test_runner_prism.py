"""Prism, Beam's own portable runner (a Go binary), as ``--runner prism`` for local runs.

The binary is built once with ``go install github.com/apache/beam/sdks/v2/go/cmd/prism@v2.62.0`` into
~/.cache/osmosis-beam (``prism_binary`` in tests/conftest.py); Beam's PrismRunner starts it as the job
service, and the workers are LOOPBACK (this process). The same pipeline YAML runs on direct and on prism.
"""
from __future__ import annotations

import json

import pytest

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.runners.options import pipeline_options
from tests.integration.cluster_support import SYNTH, osmosis, same_postgres_upsert, write_yaml

pytestmark = pytest.mark.slow


def prism_args(binary) -> list[str]:
    return ["--runner", "prism", "--", f"--prism_location={binary}", "--job_timeout=120s"]


def test_postgres_upsert_on_prism_gives_the_direct_table(tmp_path, pg_dsn, prism_binary):
    same_postgres_upsert(tmp_path, pg_dsn, prism_args(prism_binary))


def test_dead_letters_and_counts_on_prism(tmp_path, prism_binary):
    path = write_yaml(tmp_path / "synth.yaml", {
        "id": "synth_prism",
        "source": {"type": SYNTH, "count": 60, "step_us": 60_000_000, "clock": "2024-01-01T01:00:00Z"},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "read": {"splits": 3, "batch_size": 7},
        "steps": [{"map": {"share": "value // (id % 20)"}}],  # every 20th record divides by zero (5%)
        "sink": {"type": "jsonl", "path": str(tmp_path / "out")},
        "dead_letter": str(tmp_path / "dead"),
    })
    summary = osmosis(tmp_path / "home", "run", path, *prism_args(prism_binary))
    assert summary["rc"] == 0, summary["stderr"][-3000:]
    assert (summary["records_read"], summary["records_written"], summary["dead_letter"]) == (60, 57, 3)
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == [i for i in range(60) if i % 20]
    dead = list(read_jsonl_dir(tmp_path / "dead"))
    assert sorted(d["record"]["id"] for d in dead) == [0, 20, 40]
    assert all("zero" in d["error"] for d in dead), json.dumps(dead[:2], default=str)


def test_a_missing_prism_binary_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        pipeline_options("prism", {"prism_location": str(tmp_path / "prism")})
    assert err.value.problems == [
        f"runner prism: prism_location: no such file '{tmp_path / 'prism'}'; build the binary with `go install "
        "github.com/apache/beam/sdks/v2/go/cmd/prism@v2.62.0` and give its path (~/go/bin/prism)"
    ]
