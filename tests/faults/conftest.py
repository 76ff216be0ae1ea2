"""The fault suite: real servers, real signals, a small tmpfs; each test counts what it injected and checked.

A test takes the ``faults`` fixture and calls ``faults.injected(n=1)`` for every fault it causes (a
SIGKILL, a stopped server, a full disk, a stalled peer, a hostile file) and ``faults.checked(rows)`` for
every row whose delivery it verified exactly once. At the end of the session the suite prints::

    fault suite: 37 faults injected, 912,345 rows checked, 24 tests

so a run shows how much it really exercised.
"""
from __future__ import annotations

import dataclasses

import pytest


@dataclasses.dataclass
class FaultTally:
    faults: int = 0
    rows: int = 0
    tests: int = 0

    def injected(self, n: int = 1) -> None:
        self.faults += n

    def checked(self, rows: int) -> None:
        self.rows += rows


_TALLY = FaultTally()


@pytest.fixture
def faults() -> FaultTally:
    """The session's tally of injected faults and checked rows (see this module's docstring)."""
    _TALLY.tests += 1
    return _TALLY


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _TALLY.tests:
        terminalreporter.write_line(
            f"fault suite: {_TALLY.faults} faults injected, {_TALLY.rows:,} rows checked, {_TALLY.tests} tests"
        )
