"""The fixed cost of a job: Beam is imported without the parts the chosen runner never uses."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_PROBE = textwrap.dedent("""
    import json, sys
    from osmosis_beam.runners.lean import import_beam
    import_beam(sys.argv[1])
    loaded = {name: name in sys.modules for name in ("apache_beam", "pandas", "apache_beam.io.gcp.bigquery",
                                                     "apache_beam.io.gcp.gcsfilesystem", "apache_beam.io.hadoopfilesystem")}
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    p = beam.Pipeline(runner=FnApiRunner())
    p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2)
    state = p.run().wait_until_finish()
    import pandas  # held back only while Beam was imported
    print(json.dumps({"loaded": loaded, "state": str(state), "gcp": sorted(m for m in ("google.cloud.bigquery", "google.cloud.storage", "google.cloud.pubsub") if m in sys.modules)}))
""")


def _probe(runner: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, runner], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_direct_job_imports_beam_without_gcp_hadoop_or_pandas_and_still_runs():
    result = _probe("direct")
    assert result["loaded"] == {
        "apache_beam": True, "pandas": False, "apache_beam.io.gcp.bigquery": False,
        "apache_beam.io.gcp.gcsfilesystem": False, "apache_beam.io.hadoopfilesystem": False,
    }
    assert result["state"] == "DONE"
    assert result["gcp"] == []


def test_a_dataflow_job_gets_all_of_beam():
    result = _probe("dataflow")
    assert result["loaded"]["apache_beam.io.gcp.bigquery"] is True
    assert result["state"] == "DONE"


_LATER_DATAFLOW = textwrap.dedent("""
    import json, sys
    from osmosis_beam.runners.lean import import_beam
    import_beam("direct")
    from apache_beam.utils import retry
    from apache_beam.runners.dataflow.internal.clients import dataflow as api
    before = [retry.HttpError is None, hasattr(api, "DataflowV1b3")]
    import_beam("dataflow")  # a launcher's next pipeline runs on Dataflow
    import apache_beam.runners.dataflow.dataflow_runner as runner
    print(json.dumps({"before": before, "after": [retry.HttpError is None, hasattr(api, "DataflowV1b3"),
                                                  hasattr(runner.dataflow_api, "DataflowV1b3")]}))
""")


def test_a_later_dataflow_job_in_the_same_process_gets_what_was_held_back():
    out = subprocess.run([sys.executable, "-c", _LATER_DATAFLOW], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["before"] == [True, False]  # held back for the direct job
    assert result["after"] == [False, True, True]


# -- the exit: no interpreter teardown, nothing the exit must do left undone ---------------------------------------

_EXIT_PROBE = textwrap.dedent("""
    import atexit, sys, tempfile, threading, time, weakref, os
    from osmosis_beam.cli import exit_now
    folder = tempfile.mkdtemp(prefix="osmosis-exit-probe-")
    print(folder, flush=True)
    class Held: pass
    held = Held()
    weakref.finalize(held, os.rmdir, folder)            # a clean-up left to weakref.finalize (atexit=True)
    atexit.register(lambda: print("atexit ran"))        # buffered: the exit must flush it
    sys.stderr.write("to stderr")
    if sys.argv[1] == "thread":
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread done"))).start()
    exit_now(int(sys.argv[2]))
    print("never")
""")


def _exit_probe(mode: str, code: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _EXIT_PROBE, mode, str(code)], capture_output=True, text=True, timeout=60)


def test_exit_now_runs_atexit_and_finalizers_flushes_and_keeps_the_code():
    import os

    out = _exit_probe("plain", 3)
    folder, *rest = out.stdout.splitlines()
    assert out.returncode == 3
    assert rest == ["atexit ran"]
    assert out.stderr == "to stderr"
    assert not os.path.exists(folder)  # the finalizer ran


def test_exit_now_waits_for_a_running_thread_as_a_normal_exit_does():
    out = _exit_probe("thread", 0)
    assert out.returncode == 0
    assert out.stdout.splitlines()[1:] == ["thread done", "atexit ran"]


def test_the_command_exits_through_exit_now():
    """``osmosis`` and ``python -m osmosis_beam.cli`` end with exit_now (the console script names ``entry``)."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "osmosis"]
    assert script.value == "osmosis_beam.cli:entry"
    out = subprocess.run([sys.executable, "-m", "osmosis_beam.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "usage:" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "osmosis_beam.cli", "no-such-command"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
