"""A synthetic connector for tests of the read, the runner and failure handling.

Records are generated deterministically: ``count`` records from ``first`` every ``step_us``
microseconds, ``ties`` records per cursor value. ``sleep_per_record`` slows the read down;
``fail_after`` raises after that many records; ``marker`` is a file touched when reading starts.
"""
from __future__ import annotations

import datetime as dt
import os
import time

from osmosis_beam.core.errors import RetriableConnectorError
from osmosis_beam.core.options import Option
from osmosis_beam.core.timefmt import from_micros, parse_timestamp, to_micros
from osmosis_beam.io.base import BaseConnector


class SyntheticConnector(BaseConnector):
    """Deterministic generated records (tests only)."""

    type_name = "synthetic"
    cursor_fields = ("ts",)
    options = (
        Option("count", "int", default=100),
        Option("first", "timestamp", default=parse_timestamp("2024-01-01T00:00:00Z")),
        Option("step_us", "int", default=1_000_000),
        Option("ties", "int", default=1),
        Option("clock", "timestamp"),
        Option("sleep_per_record", "float", default=0.0),
        Option("fail_after", "int"),
        Option("marker"),
        Option("password", secret=True),
    )

    def source_clock(self):
        return self.config["clock"] or dt.datetime.now(dt.timezone.utc)

    def read_window(self, lo, hi):
        if self.config["marker"]:
            with open(self.config["marker"], "a") as fh:
                fh.write(f"{os.getpid()}\n")
        first = to_micros(self.config["first"])
        step = self.config["step_us"]
        ties = self.config["ties"]
        lo_us = to_micros(lo) if lo is not None else None
        hi_us = to_micros(hi)
        produced = 0
        for i in range(self.config["count"]):
            ts = first + (i // ties) * step
            if (lo_us is not None and ts < lo_us) or ts >= hi_us:
                continue
            if self.config["fail_after"] is not None and produced >= self.config["fail_after"]:
                raise RetriableConnectorError(
                    f"synthetic source broke after {produced} records (password {self.config['password'].reveal() if self.config['password'] else ''})"
                )
            if self.config["sleep_per_record"]:
                time.sleep(self.config["sleep_per_record"])
            produced += 1
            yield {"id": i, "ts": from_micros(ts), "value": i * 10}
