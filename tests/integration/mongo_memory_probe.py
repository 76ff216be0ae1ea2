"""Measures the memory a MongoDB window read takes, in a fresh process (for the 100k-document test).

    python -m tests.integration.mongo_memory_probe URI DATABASE COLLECTION HI_ISO LO_ISO   (then a line on stdin)

Reads the window ``(-inf, HI)`` of a collection whose cursor is ``ts`` through ``ReadWindow`` on Beam's
in-process runner into a DoFn that drops the batches (connector, Beam plumbing and all). Prints one JSON
object: ``beam``: ``{"count", "rss_growth"}`` (how many bytes the process's peak RSS grew during the
read, after a warm-up), and ``per_record``: what one materialised record costs (tracemalloc over the records of the first 5 s after LO_ISO), to compare with the whole
window held at once.
"""
from __future__ import annotations

import json
import resource
import sys
import time
import tracemalloc


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    uri, database, collection, hi_text = argv[:4]
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from osmosis_beam.core.timefmt import from_micros, parse_timestamp, to_micros
    from osmosis_beam.core.window import SyncWindow
    from osmosis_beam.io.mongodb.source import MongoDBConnector
    from osmosis_beam.io.read import ReadWindow

    sys.stdin.readline()  # imports done while the caller fills the collection; go on its word
    hi = parse_timestamp(hi_text)
    first = parse_timestamp(argv[4]) if len(argv) > 4 else hi
    src = MongoDBConnector({"uri": uri, "database": database, "collection": collection, "cursor_field": "ts", "batch_size": 1000})
    src.connect()
    out: dict = {}

    # What one materialised record costs; also warms up the client and the codecs.
    tracemalloc.start()
    sample = list(src.read_window(None, min(hi, from_micros(to_micros(first) + 5_000_000))))
    out["per_record"] = tracemalloc.get_traced_memory()[0] / len(sample)
    tracemalloc.stop()
    del sample

    class _Drop(beam.DoFn):
        def process(self, batch):
            return ()

    before = _peak_rss()
    p = beam.Pipeline(runner=FnApiRunner())
    (p | "Read" >> ReadWindow(src, SyncWindow(None, hi), splits=4, batch_size=1000)).records | "Drop" >> beam.ParDo(_Drop())
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name("records_read"))["counters"]
    out["beam"] = {"count": sum(c.committed for c in counters), "rss_growth": _peak_rss() - before}
    src.disconnect()
    out["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
