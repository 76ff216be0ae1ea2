"""The fault suite: real servers, real signals, a small tmpfs; each test counts what it injected and checked.

A test takes the ``faults`` fixture and calls ``faults.injected(n=1)`` for every fault it causes (a
SIGKILL, a stopped server, a full disk, a stalled peer, a hostile file) and ``faults.checked(rows)`` for
every row whose delivery it verified exactly once. At the end of the session the suite prints::

    fault suite: 37 faults injected, 912,345 rows checked, 24 tests

so a run shows how much it really exercised (summed over the xdist workers: tests/services/tally.py).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.services import unavailable
from tests.services.tally import TALLY, FaultTally


@pytest.fixture
def faults() -> FaultTally:
    """The session's tally of injected faults and checked rows (see this module's docstring)."""
    TALLY.tests += 1
    return TALLY


class Tmpfs:
    """A small tmpfs mounted for one test: a real filesystem that really fills up (ENOSPC) or goes read-only."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size

    def _mount(self, *options: str) -> None:
        out = subprocess.run(["mount", *options, str(self.path)], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise OSError(f"mount {' '.join(options)} {self.path}: {out.stderr.strip() or out.returncode}")

    def mount(self) -> None:
        self._mount("-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs")

    def resize(self, size: str) -> None:
        """Grow or shrink it in place (the files stay)."""
        self._mount("-o", f"remount,size={size}")
        self.size = size

    def read_only(self, on: bool = True) -> None:
        self._mount("-o", "remount,ro" if on else "remount,rw")

    def fill(self) -> int:
        """Fill every free byte with a file of its own (``_filler``); returns how many bytes it took."""
        filler = self.path / "_filler"
        written = 0
        chunk = b"\0" * 65536
        with open(filler, "ab", buffering=0) as fh:
            while True:
                try:
                    written += fh.write(chunk)
                except OSError:
                    break
            while True:  # the last partial page
                try:
                    written += fh.write(b"\0" * 512)
                except OSError:
                    break
        return written

    def free(self) -> None:
        (self.path / "_filler").unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs("1M")`` mounts a tmpfs of that size under the test's tmp_path (root only; under CI=true a
    machine where it cannot be mounted fails the test)."""
    mounted: list[Tmpfs] = []

    def make(size: str = "1M", name: str = "tmpfs") -> Tmpfs:
        path = tmp_path / name
        path.mkdir()
        fs = Tmpfs(path, size)
        if os.geteuid() != 0:
            unavailable("a tmpfs", "mounting one needs root (the fault suite runs as root in CI)")
        try:
            fs.mount()
        except OSError as exc:
            unavailable("a tmpfs", str(exc))
        mounted.append(fs)
        return fs

    yield make
    for fs in mounted:
        fs.unmount()
