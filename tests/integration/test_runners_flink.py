"""Flink: the job Beam's FlinkRunner would start and submit.

- the options and the job-server command line are tested without Java;
- the FlinkRunner submits a real sync through a job endpoint (Beam's local job service standing in for
  a Flink job server someone already runs).

The runs on a real Flink cluster (a JobManager and two TaskManagers on loopback, Beam's Flink job server
beside them; not opt-in) are in tests/integration/test_cluster_flink.py.
"""
from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import FlinkRunnerOptions, PortableOptions
from apache_beam.runners.portability.flink_runner import FlinkJarJobServer, FlinkRunner

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.runners.options import pipeline_options
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.integration.test_runners_portable import BeamServices
from tests.services import unavailable

SYNTH = "tests.integration.synthetic:SyntheticConnector"


def make_spec(tmp_path, options, source=None):
    return parse_pipeline(
        {
            "id": "synth_flink",
            "source": {"type": SYNTH, "count": 40, "clock": "2024-01-01T01:00:00Z", **(source or {})},
            "incremental": {"start": "2024-01-01T00:00:00Z"},
            "read": {"splits": 4, "batch_size": 8},
            "steps": [{"filter": "value >= 0"}],
            "sink": {"type": "jsonl", "path": "out"},
            "runner": {"name": "flink", "options": options},
        },
        path=str(tmp_path / "synth.yaml"),
    )


# -- what FlinkRunner would launch ---------------------------------------------------------------------------
def test_the_job_server_command_uses_our_jar_and_master(tmp_path):
    jar = tmp_path / "beam-runners-flink-1.19-job-server-2.62.0.jar"
    jar.write_bytes(b"PK")  # only its path matters here
    opts = pipeline_options("flink", {
        "flink_master": "flink-jobmanager.internal:8081", "flink_version": "1.19",
        "flink_job_server_jar": str(jar), "parallelism": 8,
        "environment_type": "EXTERNAL", "environment_config": "localhost:50000",
    }, job_name="osmosis-synth-flink-run1")
    runner = FlinkRunner()
    job_server = runner.default_job_server(opts)._job_server
    assert isinstance(job_server, FlinkJarJobServer)
    cmd, endpoint = job_server.subprocess_cmd_and_endpoint()
    assert cmd[:3] == ["java", "-jar", str(jar)]
    assert cmd[cmd.index("--flink-master") + 1] == "http://flink-jobmanager.internal:8081"
    assert endpoint.startswith("localhost:")
    flink = opts.view_as(FlinkRunnerOptions)
    assert (flink.flink_version, flink.parallelism) == ("1.19", 8)
    env = runner.default_environment(opts)
    assert env.to_runner_api(None).urn == "beam:env:external:v1"
    all_options = opts.get_all_options(retain_unknown_options=True)
    assert all_options["checkpointing_interval"] == "-1"  # batch: no checkpoints
    assert all_options["job_name"] == "osmosis-synth-flink-run1"
    assert all_options.get("setup_file") is None  # EXTERNAL workers bring their own osmosis-beam


def test_a_remote_master_defaults_to_docker_workers_with_the_package_staged():
    opts = pipeline_options("flink", {"flink_master": "flink.prod.example:8081", "flink_version": "1.19"})
    portable = opts.view_as(PortableOptions)
    assert portable.environment_type == "DOCKER"
    assert opts.get_all_options()["setup_file"].endswith("setup.py")
    assert FlinkRunner().default_environment(opts).to_runner_api(None).urn == "beam:env:docker:v1"


def test_a_local_master_defaults_to_loopback_workers():
    opts = pipeline_options("flink", {"flink_master": "localhost:8081"})
    assert opts.view_as(PortableOptions).environment_type == "LOOPBACK"
    assert opts.get_all_options().get("setup_file") is None


def test_a_missing_jar_is_a_config_error_not_a_download(tmp_path):
    with pytest.raises(ConfigError) as err:
        pipeline_options("flink", {"flink_master": "localhost:8081", "flink_version": "1.19",
                                   "flink_job_server_jar": str(tmp_path / "nope.jar")})
    assert err.value.problems == [
        f"runner flink: flink_job_server_jar: no such file '{tmp_path / 'nope.jar'}'; give the path (or http URL) "
        "of beam-runners-flink-1.19-job-server-2.62.0.jar"
    ]


# -- the FlinkRunner through a job endpoint ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def job_service(tmp_path_factory):
    services = BeamServices(tmp_path_factory.mktemp("flink_job_service"), worker_pool=False)
    try:
        services.start()
    except Exception as exc:  # noqa: BLE001
        services.stop()
        unavailable("Beam job service", str(exc))
    yield services
    services.stop()


def test_flink_runner_submits_to_a_running_job_server(tmp_path, home, job_service):
    """``job_endpoint`` points the FlinkRunner at a job server already running: no jar, no Maven."""
    spec = make_spec(tmp_path, {"flink_master": "localhost:8081", "parallelism": 2,
                                "job_endpoint": job_service.job_endpoint, "job_timeout": "90s"})
    before = set(job_service.jobs())
    run = SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home).run()
    assert (run.status, run.runner, run.records_written) == ("succeeded", "flink", 40)
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(40))
    [job_id] = set(job_service.jobs()) - before
    assert job_service.jobs()[job_id] == "DONE"
