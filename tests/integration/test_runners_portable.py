"""Sync runs on Beam's portable job service, with LOOPBACK and EXTERNAL workers, end to end.

One job service (``local_job_service_main``) and one worker pool (``worker_pool_main``) serve the
whole module. The worker pool runs with the virtualenv's ``bin`` first on ``PATH`` (it starts workers
as ``python ...``) and with an environment of its own, so a secret can only reach its workers by the
variable name the job carries. Every submission has a hard limit (``job_timeout``) besides pytest's.

The direct runner's worker processes (``workers: 2``) are tested here too: the same pipelines, run
in processes other than the launcher.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError, RunError
from osmosis_beam.core.options import Option
from osmosis_beam.core.timefmt import from_micros, parse_timestamp, to_micros
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.runners.secrets import find_secrets
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SYNTH = "tests.integration.synthetic:SyntheticConnector"
PROBE = "tests.integration.test_runners_portable:SecretProbe"
# The worker pool's environment has this variable; the launcher (this process) gets it per test.
POOL_SECRET_VAR, POOL_SECRET = "OSMOSIS_TEST_WORKER_TOKEN", "tok-3c1f-worker-side-9a7e"
SUBMIT_LIMIT = "90s"  # every job this module submits is cancelled after this long


class SecretProbe(BaseConnector):
    """Reports, per record, which process read it and whether the secret it revealed there was right.

    ``expect_sha256`` is the digest of the value the worker should see; the value itself is never output.
    """

    type_name = "secret_probe"
    cursor_fields = ("ts",)
    options = (
        Option("token", secret=True, required=True),
        Option("expect_sha256", required=True),
        Option("count", "int", default=20),
        Option("clock", "timestamp", required=True),
    )

    def source_clock(self):
        return self.config["clock"]

    def read_window(self, lo, hi):
        seen = hashlib.sha256(str(self.config["token"].reveal()).encode()).hexdigest()
        first = to_micros(parse_timestamp("2024-01-01T00:00:00Z"))
        for i in range(self.config["count"]):
            ts = from_micros(first + i * 1_000_000)
            if (lo is None or ts >= lo) and ts < hi:
                yield {"id": i, "ts": ts, "pid": os.getpid(), "token_ok": seen == self.config["expect_sha256"]}


# -- services ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


class BeamServices:
    """A Beam job service and (optionally) an EXTERNAL worker pool on loopback ports."""

    def __init__(self, tmp: Path, worker_pool: bool = True) -> None:
        self.tmp = tmp
        self.job_port = _free_port()
        self.pool_port = _free_port() if worker_pool else None
        self.procs: list[subprocess.Popen] = []

    @property
    def job_endpoint(self) -> str:
        return f"localhost:{self.job_port}"

    @property
    def pool_endpoint(self) -> str:
        return f"localhost:{self.pool_port}"

    def start(self) -> "BeamServices":
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # workers start as `python ...`
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"  # tests.* for the workers
        env.pop(POOL_SECRET_VAR, None)
        starts = [("job service", self.job_port, ["apache_beam.runners.portability.local_job_service_main",
                                                   f"--port={self.job_port}"], env)]
        if self.pool_port:
            pool_env = dict(env, **{POOL_SECRET_VAR: POOL_SECRET})
            starts.append(("worker pool", self.pool_port, ["apache_beam.runners.worker.worker_pool_main",
                                                            f"--service_port={self.pool_port}"], pool_env))
        waits = []
        for what, port, args, proc_env in starts:
            log = self.tmp / f"{what.replace(' ', '_')}.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", *args], cwd=str(ROOT), env=proc_env,
                stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            self.procs.append(proc)
            waits.append((port, proc, what, log))
        for wait in waits:
            _wait_port(*wait)
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def jobs(self) -> dict[str, str]:
        """Job id -> state name, as the job service reports them."""
        import grpc
        from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

        with grpc.insecure_channel(self.job_endpoint) as channel:
            stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
            response = stub.GetJobs(beam_job_api_pb2.GetJobsRequest(), timeout=10)
            return {j.job_id: beam_job_api_pb2.JobState.Enum.Name(j.state) for j in response.job_info}

    def pipeline(self, job_id: str):
        import grpc
        from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

        with grpc.insecure_channel(self.job_endpoint) as channel:
            stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
            return stub.GetPipeline(beam_job_api_pb2.GetJobPipelineRequest(job_id=job_id), timeout=10).pipeline


@pytest.fixture(scope="module")
def beam_services(tmp_path_factory):
    services = BeamServices(tmp_path_factory.mktemp("beam_services"))
    try:
        services.start()
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        services.stop()
        unavailable("Beam job service", str(exc))
    yield services
    services.stop()


# -- helpers ------------------------------------------------------------------------------------------------
def make_spec(tmp_path, runner=None, source=None, **extra):
    data = {
        "id": "synth",
        "source": {"type": SYNTH, "count": 60, "clock": "2024-01-01T01:00:00Z", **(source or {})},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "read": {"splits": 4, "batch_size": 7},
        "steps": [{"filter": "value >= 0"}],
        "sink": {"type": "jsonl", "path": "out"},
        **extra,
    }
    if runner is not None:
        data["runner"] = runner
    return parse_pipeline(data, path=str(tmp_path / "synth.yaml"))


def store_for(home):
    return SQLiteStateStore(home / "state.db")


def portable(services, **options):
    return {"name": "portable", "options": {"job_endpoint": services.job_endpoint, "job_timeout": SUBMIT_LIMIT, **options}}


# -- LOOPBACK -------------------------------------------------------------------------------------------------
def test_loopback_run_commits_with_counts_from_the_job_service(tmp_path, home, beam_services):
    spec = make_spec(tmp_path, runner=portable(beam_services))
    before = set(beam_services.jobs())
    run = SyncRunner(spec, store_for(home), home=home).run()
    assert (run.status, run.runner) == ("succeeded", "portable")
    assert (run.records_read, run.records_written, run.dead_letter) == (60, 60, 0)
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(60))
    assert store_for(home).get_watermark("synth").value == parse_timestamp("2024-01-01T01:00:00Z")
    [job_id] = set(beam_services.jobs()) - before
    assert beam_services.jobs()[job_id] == "DONE"
    # The graph the job service got: the read, the step and the sink, with readable labels.
    names = {t.unique_name for t in beam_services.pipeline(job_id).components.transforms.values()}
    assert {f"Read {SYNTH}", "Steps", "Steps/1: filter", "Write jsonl", "Write dead letters"} <= names


def test_beam_args_after_the_cli_double_dash_choose_the_job_service(tmp_path, home, beam_services, osmosis_cli):
    path = tmp_path / "synth.yaml"
    path.write_text(json.dumps({
        "id": "synth",
        "source": {"type": SYNTH, "count": 30, "clock": "2024-01-01T01:00:00Z"},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "sink": {"type": "jsonl", "path": str(tmp_path / "out")},
    }))
    result = osmosis_cli(
        "run", path, "--runner", "portable", "--",
        "--job-endpoint", beam_services.job_endpoint, "--environment-type=LOOPBACK", f"--job_timeout={SUBMIT_LIMIT}",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["status"], summary["records_written"]) == ("succeeded", 30)
    assert len(list(read_jsonl_dir(tmp_path / "out"))) == 30


# -- EXTERNAL workers -------------------------------------------------------------------------------------------
def probe_spec(tmp_path, services, token_ref, expect):
    return parse_pipeline(
        {
            "id": "probe",
            "source": {"type": PROBE, "token": token_ref, "expect_sha256": hashlib.sha256(expect.encode()).hexdigest(),
                       "count": 60, "clock": "2024-01-01T00:01:00Z"},
            "incremental": {"start": "2024-01-01T00:00:00Z"},
            "sink": {"type": "jsonl", "path": "out"},
            "runner": portable(services, environment_type="EXTERNAL", environment_config=services.pool_endpoint),
        },
        path=str(tmp_path / "probe.yaml"),
    )


def test_external_workers_read_the_secret_from_their_own_environment(tmp_path, home, beam_services, monkeypatch):
    monkeypatch.setenv(POOL_SECRET_VAR, POOL_SECRET)  # the launcher has it too, for its own use
    spec = probe_spec(tmp_path, beam_services, f"${{{POOL_SECRET_VAR}}}", POOL_SECRET)
    before = set(beam_services.jobs())
    run = SyncRunner(spec, store_for(home), home=home).run()
    assert (run.status, run.records_written) == ("succeeded", 60)
    rows = list(read_jsonl_dir(tmp_path / "out"))
    assert len(rows) == 60 and all(r["token_ok"] for r in rows)
    assert {r["pid"] for r in rows}.isdisjoint({os.getpid()})  # read by another process: the pool's worker
    # The job the service received holds the variable's name, never its value.
    [job_id] = set(beam_services.jobs()) - before
    graph = beam_services.pipeline(job_id)
    assert find_secrets(graph, [POOL_SECRET]) == []
    assert find_secrets(graph, [f"${{{POOL_SECRET_VAR}}}"]) == [0]


def test_a_worker_without_the_variable_fails_the_run_naming_it(tmp_path, home, beam_services, monkeypatch):
    monkeypatch.setenv("OSMOSIS_TEST_LAUNCHER_ONLY", "launcher-only-value-1234")
    spec = probe_spec(tmp_path, beam_services, "${OSMOSIS_TEST_LAUNCHER_ONLY}", "launcher-only-value-1234")
    with pytest.raises(RunError) as err:
        SyncRunner(spec, store_for(home), home=home).run()
    assert "environment variable OSMOSIS_TEST_LAUNCHER_ONLY is not set on this worker" in err.value.message
    assert "launcher-only-value-1234" not in err.value.message
    store = store_for(home)
    assert store.get_watermark("probe").value is None
    [failed] = store.list_runs("probe")
    assert failed.status == "failed" and "OSMOSIS_TEST_LAUNCHER_ONLY" in failed.error
    assert list(read_jsonl_dir(tmp_path / "out")) == []


def test_a_literal_secret_is_refused_for_a_remote_runner(tmp_path, home, beam_services):
    spec = probe_spec(tmp_path, beam_services, "written-in-the-file-123", "written-in-the-file-123")
    before = set(beam_services.jobs())
    with pytest.raises(ConfigError) as err:
        SyncRunner(spec, store_for(home), home=home).run()
    assert "source.token: this secret is written in the pipeline file" in err.value.message
    assert "${PROBE_TOKEN}" in err.value.message
    assert set(beam_services.jobs()) == before  # nothing submitted
    assert store_for(home).list_runs("probe") == []  # nothing recorded


# -- cancelling ------------------------------------------------------------------------------------------------------
def slow_spec(tmp_path, services, marker, **runner_options):
    # 300 records, 50 ms each: about 15 s of reading, in one sub-window so no worker finishes early.
    return make_spec(
        tmp_path,
        runner=portable(services, environment_type="EXTERNAL", environment_config=services.pool_endpoint, **runner_options),
        source={"count": 300, "sleep_per_record": 0.05, "marker": str(marker), "clock": "2024-01-01T01:00:00Z"},
        read={"splits": 1, "batch_size": 10},
    )


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_cancelling_the_run_cancels_the_job(tmp_path, home, beam_services):
    marker = tmp_path / "reading"
    spec = slow_spec(tmp_path, beam_services, marker)
    cancel = threading.Event()
    outcome: dict = {}
    before = set(beam_services.jobs())

    def run():
        try:
            SyncRunner(spec, store_for(home), home=home, cancel_event=cancel).run()
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    _wait_for(marker)  # a worker is reading
    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(60)
    assert not thread.is_alive()
    assert time.monotonic() - cancelled_at < 15  # far sooner than the 15 s the read would take
    assert isinstance(outcome.get("error"), RunError) and "cancelled" in outcome["error"].message
    [job_id] = set(beam_services.jobs()) - before
    assert beam_services.jobs()[job_id] in ("CANCELLED", "CANCELLING")
    store = store_for(home)
    assert store.get_watermark("synth").value is None
    assert [r.status for r in store.list_runs("synth")] == ["failed"]


def test_job_timeout_cancels_the_job_and_fails_the_run(tmp_path, home, beam_services):
    marker = tmp_path / "reading"
    spec = slow_spec(tmp_path, beam_services, marker, job_timeout="3s")
    before = set(beam_services.jobs())
    started = time.monotonic()
    with pytest.raises(RunError) as err:
        SyncRunner(spec, store_for(home), home=home).run()
    assert time.monotonic() - started < 14
    assert "did not finish within 3s (runner option job_timeout); cancelled it" in err.value.message
    [job_id] = set(beam_services.jobs()) - before
    assert beam_services.jobs()[job_id] in ("CANCELLED", "CANCELLING")
    assert store_for(home).get_watermark("synth").value is None


# -- the direct runner's worker processes ---------------------------------------------------------------------------
def test_direct_runner_with_worker_processes(tmp_path, home, monkeypatch):
    marker = tmp_path / "readers"
    monkeypatch.chdir(ROOT)  # the worker processes import tests.integration.synthetic from here
    spec = make_spec(
        tmp_path,
        runner={"name": "direct", "options": {"workers": 2}},
        source={"count": 200, "marker": str(marker)},
        read={"splits": 4, "batch_size": 25},
        steps=[],
    )
    run = SyncRunner(spec, store_for(home), home=home).run()
    assert (run.status, run.records_read, run.records_written) == ("succeeded", 200, 200)
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(200))
    readers = {int(line) for line in marker.read_text().split()}
    assert os.getpid() not in readers and len(readers) >= 1  # read in worker processes, not the launcher
    assert store_for(home).get_watermark("synth").value == parse_timestamp("2024-01-01T01:00:00Z")



# -- live progress (issue 13) -----------------------------------------------------------------------------------
def _progress_runner(spec, home):
    import io

    stream = io.StringIO()
    runner = SyncRunner(spec, store_for(home), home=home, progress={"interval": 0.3, "live": False, "stream": stream})
    return runner


def test_loopback_progress_counts_while_the_job_runs(tmp_path, home, beam_services):
    # 60 records over [00:00, 01:00), one a minute, 0.1 s each: about 6 s of reading, in one sub-window.
    spec = make_spec(tmp_path, runner=portable(beam_services), source={"step_us": 60_000_000, "sleep_per_record": 0.1},
                     read={"splits": 1, "batch_size": 5})
    runner = _progress_runner(spec, home)
    run = runner.run()
    assert (run.status, run.records_read) == ("succeeded", 60)
    reporter = runner.last_progress
    seen = [p for p in reporter.reports if 0 < p.read < 60]
    assert len(seen) >= 3, reporter.reports  # counted while the job ran, not only at its end
    shares = [p.share for p in reporter.reports]
    assert shares == sorted(shares) and all(0 <= s <= 1 for s in shares)
    for p in seen:
        assert abs(p.share - p.read / 60) <= 0.1 and p.eta_seconds is not None


def test_external_workers_progress_shows_the_job_state_from_the_job_service(tmp_path, home, beam_services):
    spec = parse_pipeline(
        {
            "id": "slow_external",
            "source": {"type": SYNTH, "count": 30, "step_us": 60_000_000, "sleep_per_record": 0.1,
                       "clock": "2024-01-01T01:00:00Z"},
            "incremental": {"start": "2024-01-01T00:00:00Z"},
            "read": {"splits": 1, "batch_size": 5},
            "sink": {"type": "jsonl", "path": "out"},
            "runner": portable(beam_services, environment_type="EXTERNAL", environment_config=beam_services.pool_endpoint),
        },
        path=str(tmp_path / "slow.yaml"),
    )
    runner = _progress_runner(spec, home)
    run = runner.run()
    assert (run.status, run.records_read) == ("succeeded", 30)
    reporter = runner.last_progress
    # Workers in another process: the only news while the job runs is what the job service says.
    states = {p.state for p in reporter.reports}
    assert "RUNNING" in states, reporter.reports
    assert all(p.elapsed >= 0 for p in reporter.reports)
