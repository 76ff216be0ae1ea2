"""Run a command, print one JSON line: wall seconds, CPU seconds (user + system) and the child's peak RSS (MB).

Usage: python bench/_measure.py -- CMD ARGS...
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = usage.ru_maxrss
    print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": peak_kb / 1024, "rc": proc.returncode,
                      "stdout_tail": proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else [],
                      "stderr_tail": proc.stderr.strip().splitlines()[-5:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
