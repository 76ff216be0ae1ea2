"""Dataflow, offline: ``--dry_run=True`` builds the whole job without Google Cloud, and we inspect it.

The metadata server is pointed at a closed loopback port (``GCE_METADATA_HOST``/``GCE_METADATA_IP``,
``NO_GCE_CHECK=True``) and the project, region and bucket are fake. One job is built for the module:
a source with a secret, two steps and a MongoDB sink whose URI holds a password, both secrets given as
``${VAR}``. ``--dataflow_job_file`` receives the job as the request would send it (the Job with its
environment, options and staged packages, plus the runner API graph), and the tests read that file.

Needs ``apache-beam[gcp]`` (the ``gcp`` extra); under CI=true its absence fails these tests.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.runners.options import job_name
from osmosis_beam.runners.secrets import find_secrets
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.integration.synthetic import SyntheticConnector
from tests.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
SYNTH = "tests.integration.synthetic:SyntheticConnector"
SOURCE_PW = "src-pw-5be1-kept-out-of-jobs"
MONGO_PW = "mongo-pw-77d2-kept-out-of-jobs"
DATAFLOW = {
    "project": "osmosis-fake-project",
    "region": "europe-west1",
    "temp_location": "gs://osmosis-fake-bucket/tmp",
    "service_account_email": "osmosis-runner@osmosis-fake-project.iam.gserviceaccount.com",
    "machine_type": "n2-standard-2",
    "max_num_workers": 7,
}
DATAFLOW_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _gcp_available() -> str | None:
    try:
        import apache_beam.runners.dataflow.internal.apiclient  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module", autouse=True)
def offline_gcp():
    missing = _gcp_available()
    if missing:
        unavailable("apache-beam[gcp]", f'{missing} (pip install -e ".[test]")')
    with socket.socket() as s:  # a port nothing listens on: any metadata probe fails at once
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GCE_METADATA_HOST", f"127.0.0.1:{closed}")
        mp.setenv("GCE_METADATA_IP", f"127.0.0.1:{closed}")
        mp.setenv("NO_GCE_CHECK", "True")
        mp.setenv("OSMOSIS_DF_SOURCE_PASSWORD", SOURCE_PW)
        mp.setenv("OSMOSIS_DF_MONGO_PASSWORD", MONGO_PW)
        yield


def spec_for(tmp_path, source=None, sink=None, runner_options=None, **extra):
    return parse_pipeline(
        {
            "id": "orders_to_mongo",
            "source": {"type": SYNTH, "count": 10, "clock": "2024-01-01T01:00:00Z",
                       "password": "${OSMOSIS_DF_SOURCE_PASSWORD}", **(source or {})},
            "incremental": {"start": "2024-01-01T00:00:00Z"},
            "steps": [{"filter": "value >= 0"}, {"rename": {"value": "amount"}}],
            "sink": sink or {
                "type": "mongodb",
                "uri": "mongodb://app:${OSMOSIS_DF_MONGO_PASSWORD}@mongo.example:27017/?authSource=admin",
                "database": "shop", "collection": "orders", "key": ["id"],
            },
            "runner": {"name": "dataflow", "options": {**DATAFLOW, **(runner_options or {})}},
            **extra,
        },
        path=str(tmp_path / "orders.yaml"),
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One dry run: (the SyncRun, the job file's content, the state home, the spec)."""
    tmp = tmp_path_factory.mktemp("dataflow")
    home = tmp / "home"
    home.mkdir()
    spec = spec_for(tmp)
    job_file = tmp / "job.json"
    runner = SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home,
                        beam_args=["--dry_run=True", f"--dataflow_job_file={job_file}"])
    run = runner.run()
    return run, json.loads(job_file.read_text()), home, spec


def transforms(job):
    return job["pipeline"]["components"]["transforms"]


def test_dry_run_builds_the_job_and_changes_no_state(built):
    run, job, home, spec = built
    assert (run.status, run.runner) == ("dry_run", "dataflow")
    assert "not submitted" in run.note
    assert run.window.hi.isoformat() == "2024-01-01T01:00:00+00:00"
    store = SQLiteStateStore(home / "state.db")
    assert store.list_runs(spec.id) == [] and store.get_watermark(spec.id).value is None
    assert job["job"]["type"] == "JOB_TYPE_BATCH"


def test_job_name_and_labels_come_from_the_pipeline_and_the_run(built):
    run, job, _, spec = built
    name = job["job"]["name"]
    assert name == job_name(spec.id, run.run_id) and name.startswith("osmosis-orders-to-mongo-")
    assert DATAFLOW_NAME.fullmatch(name) and len(name) <= 63
    assert job["job"]["labels"] == {"osmosis-pipeline": "orders_to_mongo", "osmosis-run": run.run_id.lower()}


def test_the_graph_holds_the_read_the_steps_and_the_sink(built):
    _, job, _, _ = built
    names = {t["uniqueName"] for t in transforms(job).values()}
    assert {f"Read {SYNTH}", f"Read {SYNTH}/Read window", "Steps/1: filter", "Steps/2: rename",
            "Write mongodb", "Write dead letters"} <= names
    pardos = [t for t in transforms(job).values() if t.get("spec", {}).get("urn") == "beam:transform:pardo:v1"]
    assert len(pardos) >= 4


def test_the_runner_options_reach_the_job(built):
    _, job, _, _ = built
    options = job["job"]["environment"]["sdkPipelineOptions"]["options"]
    assert options["project"] == DATAFLOW["project"] and options["region"] == DATAFLOW["region"]
    assert options["service_account_email"] == DATAFLOW["service_account_email"]
    assert options["machine_type"] == "n2-standard-2" and int(options["max_num_workers"]) == 7
    assert options["save_main_session"] is False  # nothing of the launcher's __main__ travels


def test_the_package_is_staged_for_the_workers(built):
    _, job, _, _ = built
    options = job["job"]["environment"]["sdkPipelineOptions"]["options"]
    assert options["setup_file"] == str(ROOT / "setup.py")
    staged = {s["name"]: s["path"] for s in job["staged"]}
    assert "workflow.tar.gz" in staged and "pickled_main_session" not in staged
    [pool] = job["job"]["environment"]["workerPools"]
    assert "workflow.tar.gz" in {p["name"] for p in pool["packages"]}
    with tarfile.open(staged["workflow.tar.gz"]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"setup.py", "pyproject.toml", "osmosis_beam/sync/runner.py", "osmosis_beam/runners/options.py",
            "osmosis_beam/io/base.py", "osmosis_beam/io/mongodb/sink.py"} <= members
    assert not any(m.startswith("tests/") for m in members)


def test_no_secret_is_anywhere_in_the_job(built):
    _, job, _, _ = built
    text = json.dumps(job)
    uri = f"mongodb://app:{MONGO_PW}@mongo.example:27017/?authSource=admin"
    assert SOURCE_PW not in text and MONGO_PW not in text
    # Also inside pickled functions (base64 + compression) and every option and display item.
    assert find_secrets(job, [SOURCE_PW, MONGO_PW, uri]) == []
    # The secrets travel by name: the same search finds the ${VAR} text inside the pickled functions.
    assert find_secrets(job, ["${OSMOSIS_DF_SOURCE_PASSWORD}", "${OSMOSIS_DF_MONGO_PASSWORD}"]) == [0, 1]
    display = json.dumps(job["job"]["environment"]["sdkPipelineOptions"]["display_data"])
    assert "PASSWORD" not in display and "mongodb://" not in display


_WORKER = r"""
import json, os, sys
from apache_beam.internal import pickler
from apache_beam.portability.api import beam_runner_api_pb2
from google.protobuf import json_format

pipeline = json_format.ParseDict(json.load(open(sys.argv[1]))["pipeline"], beam_runner_api_pb2.Pipeline())
before = set(sys.modules)
fns = []
for t in pipeline.components.transforms.values():
    if t.spec.urn == "beam:transform:pardo:v1":
        payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
        fns.append(pickler.loads(payload.do_fn.payload))
names = sorted({m.split(".")[0] for m in set(sys.modules) - before})
read = [f for f in fns if type(f[0]).__name__ == "_ReadWindowFn"][0][0]
sink = [f for f in fns if type(f[0]).__name__ == "_WriteMongoFn"][0][0]
print(json.dumps({"imported": names, "source_pw": read._connector.config["password"].reveal(),
                  "sink_uri": sink._uri.reveal()}))
"""


def test_a_worker_unpickles_only_what_the_job_needs_and_reads_secrets_from_its_environment(built, tmp_path):
    """A fresh process stands in for a Dataflow worker: it loads every DoFn of the job, nothing else."""
    _, job, _, _ = built
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSMOSIS_DF_")}
    env.update(OSMOSIS_DF_SOURCE_PASSWORD="worker-side-source", OSMOSIS_DF_MONGO_PASSWORD="worker-side-mongo")
    out = subprocess.run([sys.executable, "-c", _WORKER, str(job_file)], capture_output=True, text=True,
                         cwd=str(ROOT), env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # The worker's own environment, not the launcher's values.
    assert result["source_pw"] == "worker-side-source"
    assert result["sink_uri"] == "mongodb://app:worker-side-mongo@mongo.example:27017/?authSource=admin"
    imported = set(result["imported"])
    print(sorted(imported))
    assert "osmosis_beam" in imported
    # Drivers load when a worker connects (DoFn.setup), and only the job's own: no other connector's.
    assert not imported & {"psycopg2", "feedparser", "requests", "lxml", "croniter", "pymongo"}


def test_a_literal_secret_is_refused_before_anything_is_built(tmp_path, home):
    spec = spec_for(tmp_path, source={"password": "literal-in-yaml-123"},
                    sink={"type": "mongodb", "uri": "mongodb://app:hunter2hunter2@db/", "database": "d",
                          "collection": "c", "key": ["id"]})
    with pytest.raises(ConfigError) as err:
        SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home, beam_args=["--dry_run=True"]).run()
    assert err.value.problems == [
        "source.password: this secret is written in the pipeline file, so it would travel inside the dataflow job; "
        "write the secret part as ${ORDERS_TO_MONGO_PASSWORD}, export ORDERS_TO_MONGO_PASSWORD where osmosis runs "
        "and on the workers, or use the direct runner",
        "sink.uri: this secret is written in the pipeline file, so it would travel inside the dataflow job; "
        "write the secret part as ${ORDERS_TO_MONGO_URI}, export ORDERS_TO_MONGO_URI where osmosis runs "
        "and on the workers, or use the direct runner",
    ]
    assert "hunter2" not in err.value.message and "literal-in-yaml" not in err.value.message


class LeakyConnector(SyntheticConnector):
    """Copies its secret into a plain attribute: the job would carry it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dsn = f"synthetic://reader:{self.config['password'].reveal()}@source"


def test_a_connector_that_leaks_its_secret_into_the_job_is_stopped_before_submission(tmp_path, home):
    spec = spec_for(tmp_path, source={"type": "tests.integration.test_runners_dataflow:LeakyConnector"})
    job_file = tmp_path / "job.json"
    with pytest.raises(ConfigError) as err:
        SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home,
                   beam_args=["--dry_run=True", f"--dataflow_job_file={job_file}"]).run()
    assert "a secret value is inside the dataflow job" in err.value.message
    assert SOURCE_PW not in err.value.message
    assert not job_file.exists()


def test_missing_dataflow_options_are_listed_at_once(tmp_path, home):
    spec = spec_for(tmp_path)
    runner = SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home, runner_options={
        "project": None, "region": None, "temp_location": "/tmp/not-gcs"})
    with pytest.raises(ConfigError) as err:
        runner.run()
    assert err.value.problems == [
        "runner dataflow: project: required, your Google Cloud project id (--project=my-project)",
        "runner dataflow: region: required, the region to run in (--region=europe-west1)",
        "runner dataflow: temp_location: must be a gs:// path, got '/tmp/not-gcs'",
    ]
    assert SQLiteStateStore(home / "state.db").list_runs(spec.id) == []
