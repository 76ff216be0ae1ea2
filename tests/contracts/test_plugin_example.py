"""A third-party plug-in runs the contract suites too: ``tests/plugin_example`` (a SQLite connector and sink
registered through the ``osmosis_beam.connectors`` / ``osmosis_beam.sinks`` entry points) is installed with
pip into a cached target folder, and its ``contract_tests.py`` runs in a subprocess against the installed
package (``--import-mode=importlib``, so nothing is imported from the source tree), found by entry point."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "tests" / "plugin_example"
CACHE = Path(os.environ.get("OSMOSIS_TEST_CACHE", "~/.cache/osmosis-beam")).expanduser() / "plugin_example"


def _installed() -> Path:
    """The plug-in installed with pip (``--target``), cached by a hash of its sources."""
    digest = hashlib.sha256()
    for path in sorted(PLUGIN.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".egg-info"):
            digest.update(str(path.relative_to(PLUGIN)).encode() + b"\0" + path.read_bytes())
    target = CACHE / digest.hexdigest()[:16]
    if (target / ".complete").is_file():
        return target
    work = CACHE / f".tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    build = work / "src"
    shutil.copytree(PLUGIN, build, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(work / "site"), str(build)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (work / "site" / ".complete").write_text("ok")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(work / "site", target)
    shutil.rmtree(work, ignore_errors=True)
    return target


def test_the_plugin_example_passes_the_contract_suites(tmp_path):
    site = _installed()
    assert list(site.glob("osmosis_sqlite_example-*.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(PLUGIN / "contract_tests.py"), "-q", "-rs", "-p", "no:cacheprovider",
         "--import-mode=importlib", f"--rootdir={tmp_path}", f"--confcutdir={PLUGIN}", "-W", "ignore::FutureWarning"],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600,
    )
    tail = done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= 14, tail  # every connector and sink contract test but the password one
    skipped = re.findall(r"SKIPPED \[\d+\] .*", done.stdout)
    assert len(skipped) == 1 and "SQLite files have no passwords" in skipped[0], tail
    assert "failed" not in done.stdout.splitlines()[-1]
