"""The fault suite's tally (see tests/faults/conftest.py), summed over pytest-xdist workers.

Each worker counts into its own ``TALLY``; at the end of its session it hands the counts to the controller
through ``config.workeroutput``, and the controller (tests/conftest.py) adds them up and prints the line.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class FaultTally:
    faults: int = 0
    rows: int = 0
    tests: int = 0

    def injected(self, n: int = 1) -> None:
        self.faults += n

    def checked(self, rows: int) -> None:
        self.rows += rows

    def add(self, counts: dict) -> None:
        """Add a worker's counts (``dataclasses.asdict`` of its tally)."""
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)

    def line(self) -> str:
        return f"fault suite: {self.faults} faults injected, {self.rows:,} rows checked, {self.tests} tests"


TALLY = FaultTally()
