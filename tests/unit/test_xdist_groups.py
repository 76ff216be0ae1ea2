"""The suite's own scheduling: each session cluster starts on one xdist worker only (tests/conftest.py).

The Flink and Spark tests carry an xdist group each and the suite runs with ``--dist loadgroup``. Under pytest
9.2 that grouping silently stopped working (pytest-xdist#1386): every worker started both clusters, and the
suite took minutes longer. These tests check the installed pytest and xdist still group, and that the
conftest's claim catches a split.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import _claim_for_this_worker


def test_loadgroup_sends_a_group_to_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(textwrap.dedent("""
        import json, os, pytest
        pytestmark = pytest.mark.xdist_group("cluster")

        @pytest.mark.parametrize("i", range(6))
        def test_grouped(i, tmp_path_factory):
            out = tmp_path_factory.getbasetemp().parent / f"grouped-{i}.json"
            out.write_text(json.dumps(os.environ["PYTEST_XDIST_WORKER"]))
    """))
    (tmp_path / "test_free.py").write_text("import pytest\n@pytest.mark.parametrize('i', range(6))\n"
                                           "def test_free(i):\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the suite's pytest.ini and conftest
    base = tmp_path / "base"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "xdist", "-n", "2", "--dist", "loadgroup", "-q",
                           "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"), f"--basetemp={base}",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    workers = {json.loads((base / f"grouped-{i}.json").read_text()) for i in range(6)}
    assert len(workers) == 1, f"one xdist group ran on {sorted(workers)}: loadgroup did not take effect"


def test_a_cluster_claimed_by_one_worker_fails_on_another(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", f"unit{id(monkeypatch):x}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    claim = _claim_for_this_worker("Test cluster")
    try:
        assert claim is not None and claim.read_text() == "gw0"
        assert _claim_for_this_worker("Test cluster") is None  # the same worker again: fine
        monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
        with pytest.raises(pytest.fail.Exception, match="already started by xdist worker gw0.*pytest<9.2"):
            _claim_for_this_worker("Test cluster")
    finally:
        claim.unlink()
