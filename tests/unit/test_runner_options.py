"""The options each runner gets, job names and labels, and secrets that travel to workers by name only."""
from __future__ import annotations

import os
import pickle
import re

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.secrets import Secret
from osmosis_beam.runners.options import (
    FLINK_VERSIONS,
    is_dry_run,
    job_labels,
    job_name,
    job_timeout,
    make_pipeline,
    pipeline_options,
)
from osmosis_beam.runners.packaging import package_setup_file
from osmosis_beam.runners.secrets import find_secrets, prepare_for_workers
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.services import unavailable

SYNTH = "tests.integration.synthetic:SyntheticConnector"
DATAFLOW = {"project": "acme-data", "region": "europe-west1", "temp_location": "gs://acme-tmp/osmosis"}
DATAFLOW_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def problems(runner, options=None, args=()):
    with pytest.raises(ConfigError) as err:
        pipeline_options(runner, options, args)
    return err.value.problems


def chosen(opts) -> dict:
    return opts.get_all_options(drop_default=True, retain_unknown_options=True)


# -- direct ------------------------------------------------------------------------------------------------
def test_direct_is_the_in_process_runner_and_names_no_beam_runner():
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    p = make_pipeline("direct")
    assert isinstance(p.runner, FnApiRunner)
    assert p.options.view_as(StandardOptions).runner is None  # never Beam's DirectRunner (it fetches Prism)
    assert chosen(pipeline_options("direct")) == {"pickle_library": "cloudpickle"}  # inline classes pickle by value


@pytest.mark.parametrize("given", [{"workers": 3}, {"workers": "3"}])
def test_direct_workers_run_worker_processes(given):
    opts = pipeline_options("direct", given)
    direct = opts.view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == (3, "multi_processing")
    assert "workers" not in chosen(opts)  # an osmosis option, never passed to Beam


def test_direct_workers_from_the_command_line_and_an_explicit_mode():
    opts = pipeline_options("direct", {}, ["--workers=2", "--direct-running-mode=multi_threading"])
    direct = opts.view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == (2, "multi_threading")
    assert pipeline_options("direct", {"workers": 1}).view_as(DirectOptions).direct_running_mode == "in_memory"


def test_direct_reads_zero_decode_splits_on_threads_unless_the_run_says_otherwise(monkeypatch):
    from osmosis_beam.runners.options import direct_read_threads, thread_direct_reads

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    assert direct_read_threads({}, [], encoded=True, splits=4) == 3  # one per core
    assert direct_read_threads({}, [], encoded=True, splits=2) == 2  # one per split
    assert direct_read_threads({}, [], encoded=False, splits=4) == 1  # a typed read holds the GIL
    assert direct_read_threads({}, [], encoded=True, splits=1) == 1
    for options, args in (({"workers": 1}, []), ({"direct_running_mode": "in_memory"}, []),
                          ({}, ["--direct-num-workers=1"]), ({}, ["--workers", "1"])):
        assert direct_read_threads(options, args, encoded=True, splits=4) == 1, (options, args)
    opts = pipeline_options("direct", {})
    thread_direct_reads(opts, 3)
    assert (opts.view_as(DirectOptions).direct_num_workers, opts.view_as(DirectOptions).direct_running_mode) == (
        3, "multi_threading")


def test_direct_problems_are_config_errors_not_exits():
    assert problems("direct", {"workers": 0, "job_timeout": "1h"}, ["--direct_running_mode=fast"]) == [
        "runner direct: direct_running_mode: must be one of in_memory, multi_threading, multi_processing, got 'fast'",
        "runner direct: job_timeout: the in-process runner cannot be stopped mid-job; it applies to the other runners",
        "runner direct: workers: must be a whole number of at least 1, got 0",
    ]


# -- how options are given ---------------------------------------------------------------------------------
def test_yaml_options_become_flags_and_command_line_arguments_win():
    opts = pipeline_options(
        "dataflow",
        {**DATAFLOW, "max-num-workers": 5, "experiments": ["a", "b"], "labels": {"team": "data"},
         "use_public_ips": False, "streaming_engine": None},
        ["--max_num_workers", "9", "--worker-machine-type=n2-standard-4"],
    )
    worker = opts.view_as(WorkerOptions)
    assert (worker.max_num_workers, worker.machine_type) == (9, "n2-standard-4")
    assert opts.view_as(GoogleCloudOptions).labels == ["team=data"]
    assert {"a", "b"} <= set(opts.view_as(beam.options.pipeline_options.DebugOptions).experiments)


def test_the_runner_is_chosen_by_name_and_runs_are_batch():
    assert problems("flink", {"flink_master": "localhost:8081"}, ["--runner=DataflowRunner", "--streaming"]) == [
        "runner flink: choose the runner by name (--runner on `osmosis run`, or runner.name in the YAML), not with "
        "Beam's --runner",
        "runner flink: --streaming: a sync run is a bounded batch job; remove it",
    ]
    with pytest.raises(ConfigError, match="unknown runner 'samza'; known: direct, portable, flink, spark, prism, dataflow"):
        pipeline_options("samza")


def test_secret_looking_options_never_reach_a_remote_job():
    found = problems("dataflow", DATAFLOW, ["--s3_secret_access_key=AKIA0000", "--azure_connection_string=x"])
    assert [p.split(":")[1].strip() for p in found] == ["--s3_secret_access_key", "--azure_connection_string"]
    assert "AKIA0000" not in " ".join(found)
    with pytest.raises(ConfigError, match="a secret cannot be a pipeline option"):
        pipeline_options("portable", {"job_endpoint": "localhost:8099", "token": Secret("x")})


# -- portable ----------------------------------------------------------------------------------------------------
def test_portable_needs_a_job_endpoint():
    assert problems("portable") == [
        "runner portable: job_endpoint: required, the host:port of a Beam job service "
        "(runner.options.job_endpoint, or -- --job_endpoint=localhost:8099)"
    ]
    assert problems("portable", {"job_endpoint": "nowhere"}) == ["runner portable: job_endpoint: must be host:port, got 'nowhere'"]


def test_portable_defaults_to_loopback_workers_and_a_job_name():
    opts = pipeline_options("portable", {"job_endpoint": "localhost:8099"}, job_name="osmosis-a-1")
    # Beam spells "no main session" as save_main_session=False (2.77) or no_save_main_session=True (2.62).
    given = {k: v for k, v in chosen(opts).items() if k not in ("save_main_session", "no_save_main_session")}
    assert given == {
        "runner": "PortableRunner", "job_endpoint": "localhost:8099", "environment_type": "LOOPBACK",
        "job_name": "osmosis-a-1", "pickle_library": "cloudpickle",
    }
    assert opts.view_as(SetupOptions).save_main_session is False


def test_portable_external_workers_need_a_worker_pool_address():
    assert problems("portable", {"job_endpoint": "localhost:8099", "environment_type": "EXTERNAL"}) == [
        "runner portable: environment_config: EXTERNAL workers need the host:port of a worker pool "
        "(python -m apache_beam.runners.worker.worker_pool_main --service_port=50000)"
    ]
    assert problems("portable", {"job_endpoint": "localhost:8099", "environment_type": "KUBERNETES"}) == [
        "runner portable: environment_type: must be one of LOOPBACK, EXTERNAL, DOCKER, PROCESS, got 'KUBERNETES'"
    ]
    opts = pipeline_options("portable", {"job_endpoint": "localhost:8099"},
                            ["--environment-type", "EXTERNAL", "--environment-config", "localhost:50000"])
    portable = opts.view_as(PortableOptions)
    assert (portable.environment_type, portable.environment_config) == ("EXTERNAL", "localhost:50000")
    assert opts.view_as(SetupOptions).setup_file is None  # the pool's own environment has osmosis-beam


def test_docker_workers_get_the_package_unless_the_user_ships_it():
    docker = {"job_endpoint": "localhost:8099", "environment_type": "DOCKER"}
    assert pipeline_options("portable", docker).view_as(SetupOptions).setup_file == package_setup_file()
    assert package_setup_file() and package_setup_file().endswith("setup.py")
    mine = pipeline_options("portable", docker, ["--setup_file=/src/mine/setup.py"])
    assert mine.view_as(SetupOptions).setup_file == "/src/mine/setup.py"
    image = pipeline_options("portable", docker, ["--sdk_container_image=acme/osmosis:1"])
    assert image.view_as(SetupOptions).setup_file is None


def test_the_main_session_stays_home_unless_asked_for():
    opts = pipeline_options("portable", {"job_endpoint": "localhost:8099", "save_main_session": True})
    assert opts.view_as(SetupOptions).save_main_session is True


# -- flink -------------------------------------------------------------------------------------------------------------
def test_flink_options():
    opts = pipeline_options(
        "flink",
        {"flink_master": "localhost:8081", "flink_version": "1.19", "parallelism": 4, "max_parallelism": 64},
        ["--flink-submit-uber-jar"], job_name="osmosis-orders-1",
    )
    flink = opts.view_as(FlinkRunnerOptions)
    assert (flink.flink_master, flink.flink_version, flink.parallelism, flink.max_parallelism) == ("localhost:8081", "1.19", 4, 64)
    assert flink.flink_submit_uber_jar is True
    assert chosen(opts)["runner"] == "FlinkRunner"
    assert chosen(opts)["checkpointing_interval"] == "-1"
    assert opts.view_as(PortableOptions).environment_type == "LOOPBACK"
    assert opts.view_as(StandardOptions).streaming is False


def test_flink_problems_at_once():
    assert problems("flink", {"flink_master": "flink", "flink_version": "1.12", "parallelism": 0,
                              "checkpointing_interval": 60000}) == [
        f"runner flink: flink_version: '1.12' is not one Beam {beam.__version__} supports; use one of {', '.join(FLINK_VERSIONS)}",
        "runner flink: flink_master: must be host:port of the Flink REST endpoint (JobManager, e.g. flink:8081), got 'flink'",
        "runner flink: parallelism: must be at least 1 (or -1 for Flink's default), got 0",
        "runner flink: checkpointing_interval: a sync run is a batch job and Flink runs it without checkpoints; "
        "the launcher commits after the job is DONE. Remove it",
    ]
    assert FLINK_VERSIONS == ("1.17", "1.18", "1.19")  # what Beam 2.62's Flink runner is published for


def test_flink_accepts_urls_and_the_magic_masters():
    for master in ("http://flink:8081", "https://flink.example.com:443", "[local]", "[auto]"):
        assert pipeline_options("flink", {"flink_master": master}).view_as(FlinkRunnerOptions).flink_master == master


# -- dataflow ------------------------------------------------------------------------------------------------------------
def test_dataflow_options_job_name_labels_and_package():
    opts = pipeline_options(
        "dataflow", {**DATAFLOW, "service_account_email": "runner@acme-data.iam.gserviceaccount.com",
                     "max_num_workers": 20, "machine_type": "n2-standard-2"},
        job_name="osmosis-orders-20240101t000000-ab12cd34", labels={"osmosis-pipeline": "orders", "osmosis-run": "r1"},
    )
    gcp = opts.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("acme-data", "europe-west1", "gs://acme-tmp/osmosis")
    assert gcp.service_account_email == "runner@acme-data.iam.gserviceaccount.com"
    assert gcp.job_name == "osmosis-orders-20240101t000000-ab12cd34"
    assert gcp.labels == ["osmosis-pipeline=orders", "osmosis-run=r1"]
    assert opts.view_as(SetupOptions).setup_file == package_setup_file()
    assert opts.view_as(SetupOptions).save_main_session is False
    assert not is_dry_run(opts)


def test_dataflow_user_job_name_and_labels_win():
    opts = pipeline_options("dataflow", {**DATAFLOW, "labels": {"osmosis-run": "mine"}}, ["--job_name=nightly"],
                            job_name="osmosis-x-1", labels={"osmosis-pipeline": "x", "osmosis-run": "1"})
    gcp = opts.view_as(GoogleCloudOptions)
    assert gcp.job_name == "nightly"
    assert gcp.labels == ["osmosis-run=mine", "osmosis-pipeline=x"]


def test_dataflow_problems_at_once():
    assert problems("dataflow", {"temp_location": "/tmp/x", "template_location": "gs://b/t"}) == [
        "runner dataflow: project: required, your Google Cloud project id (--project=my-project)",
        "runner dataflow: region: required, the region to run in (--region=europe-west1)",
        "runner dataflow: temp_location: must be a gs:// path, got '/tmp/x'",
        "runner dataflow: template_location: osmosis submits each run and waits for it; templates are not supported",
    ]


@pytest.mark.parametrize("value, dry", [("True", True), ("true", True), ("False", False), ("0", False)])
def test_dry_run_flag(value, dry):
    assert is_dry_run(pipeline_options("dataflow", DATAFLOW, [f"--dry_run={value}"])) is dry


def test_dry_run_is_refused_where_it_would_run_the_job():
    assert problems("flink", {"flink_master": "localhost:8081"}, ["--dry-run=True"]) == [
        "runner flink: --dry_run: only the dataflow runner builds a job without running it (other runners would run it)"
    ]


# -- osmosis's own options, names and labels --------------------------------------------------------------------------
def test_job_timeout():
    assert job_timeout({"job_timeout": "90s"}) == 90
    assert job_timeout({"job_timeout": 3600}) == 3600
    assert job_timeout({}, ["--job-timeout=2h"]) == 7200
    assert job_timeout({"job_timeout": "1h"}, ["--job_timeout", "5m"]) == 300
    assert job_timeout(None) is None
    assert problems("portable", {"job_endpoint": "localhost:1", "job_timeout": "soon"}) == [
        "runner portable: job_timeout: invalid duration 'soon': use e.g. 30s, 10m, 2h, 1d"]
    assert "job_timeout" not in chosen(pipeline_options("portable", {"job_endpoint": "localhost:1", "job_timeout": "1m"}))


@pytest.mark.parametrize(
    "pipeline_id, run_id",
    [("tech_news", "20240101T010000-abcd1234"), ("orders", "20991231T235959-00000000"),
     ("a" * 80, "20240101T010000-abcd1234"), ("9lives", "r"), ("___", "20240101T010000-abcd1234")],
)
def test_job_names_are_valid_for_dataflow_and_labels_are_valid(pipeline_id, run_id):
    name = job_name(pipeline_id, run_id)
    assert DATAFLOW_NAME.fullmatch(name) and len(name) <= 63, name
    assert name.startswith("osmosis-") and name.endswith(run_id.lower().replace("_", "-")[-8:])
    labels = job_labels(pipeline_id, run_id)
    assert set(labels) == {"osmosis-pipeline", "osmosis-run"}
    assert all(LABEL_VALUE.fullmatch(v) for v in labels.values()), labels


def test_long_pipeline_ids_keep_distinct_job_names():
    a = job_name("x" * 70 + "_orders", "20240101T010000-abcd1234")
    b = job_name("x" * 70 + "_refunds", "20240101T010000-abcd1234")
    assert a != b and len(a) == len(b) <= 63
    assert job_name("tech_news", "20240101T010000-abcd1234") == "osmosis-tech-news-20240101t010000-abcd1234"


# -- secrets --------------------------------------------------------------------------------------------------------------------
def spec(source=None, sink=None, env=None, runner=None):
    data = {
        "id": "orders",
        "source": {"type": SYNTH, "clock": "2024-01-01T01:00:00Z", **(source or {})},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "sink": sink or {"type": "jsonl", "path": "/tmp/osmosis-unit-out"},
    }
    if runner:
        data["runner"] = runner
    return parse_pipeline(data, env=env or {})


def test_a_secret_remembers_the_env_text_it_came_from():
    def secret(value, env):
        return spec({"password": value}, env=env).source.options["password"]

    assert secret("${PG_PW}", {"PG_PW": "hunter2"}).env == "${PG_PW}"
    assert secret("${PG_PW}", {"PG_PW": "123456"}).reveal() == "123456"  # a number-looking value stays text
    assert secret("${PG_PW}", {"PG_PW": "123456"}).env == "${PG_PW}"
    assert secret("app:${PG_PW}@db", {"PG_PW": "x"}).env == "app:${PG_PW}@db"
    assert secret("${PG_PW:-fallback}", {"PG_PW": "x"}).env == "${PG_PW}"  # the default never travels
    assert secret("${PG_PW:-fallback}", {}).env is None  # the value IS the file's literal default
    assert secret("hunter2", {}).env is None
    # The connector re-validates its options; the reference survives.
    assert spec({"password": "${PG_PW}"}, env={"PG_PW": "x"}).build_connector().config["password"].env == "${PG_PW}"


def test_workers_get_the_name_and_resolve_the_value_from_their_environment(monkeypatch):
    connector = spec({"password": "${OSMOSIS_UNIT_PW}"}, env={"OSMOSIS_UNIT_PW": "launcher-value-1"}).build_connector()
    prepare_for_workers("flink", source=connector)
    secret = connector.config["password"]
    assert secret.reveal() == "launcher-value-1" and secret.by_reference  # the launcher keeps its value
    data = pickle.dumps(connector)
    assert b"launcher-value-1" not in data and b"${OSMOSIS_UNIT_PW}" in data
    monkeypatch.setenv("OSMOSIS_UNIT_PW", "worker-value-2")
    on_worker = pickle.loads(data)
    assert on_worker.config["password"].reveal() == "worker-value-2"
    assert b"worker-value-2" not in pickle.dumps(on_worker)  # a worker re-pickling sends the name again
    monkeypatch.delenv("OSMOSIS_UNIT_PW")
    with pytest.raises(ConfigError, match=r"source.password: environment variable OSMOSIS_UNIT_PW is not set on this worker"):
        pickle.loads(data).config["password"].reveal()


def test_the_direct_runner_keeps_secrets_by_value():
    connector = spec({"password": "${OSMOSIS_UNIT_PW}"}, env={"OSMOSIS_UNIT_PW": "launcher-value-1"}).build_connector()
    prepare_for_workers("direct", source=connector)
    assert not connector.config["password"].by_reference
    assert pickle.loads(pickle.dumps(connector)).config["password"].reveal() == "launcher-value-1"


def test_literal_secrets_and_written_out_url_passwords_are_refused_for_remote_runners():
    connector = spec({"password": "hunter2hunter2"}).build_connector()
    sink = parse_pipeline(
        {"id": "orders", "source": {"type": SYNTH}, "sink": {
            "type": "mongodb", "uri": "mongodb://app:hunter2hunter2@${MONGO_HOST}/", "database": "d", "collection": "c",
            "key": ["id"]}}, env={"MONGO_HOST": "db"}).build_sink()
    with pytest.raises(ConfigError) as err:
        prepare_for_workers("portable", source=connector, sink=sink)
    assert err.value.problems == [
        "source.password: this secret is written in the pipeline file, so it would travel inside the portable job; "
        "write the secret part as ${ORDERS_PASSWORD}, export ORDERS_PASSWORD where osmosis runs and on the workers, "
        "or use the direct runner",
        "sink.uri: this secret holds a password written out, so it would travel inside the portable job; "
        "write the secret part as ${ORDERS_URI}, export ORDERS_URI where osmosis runs and on the workers, "
        "or use the direct runner",
    ]
    assert "hunter2" not in err.value.message


def test_a_url_template_with_the_password_from_the_environment_travels():
    sink = parse_pipeline(
        {"id": "orders", "source": {"type": SYNTH}, "sink": {
            "type": "mongodb", "uri": "mongodb://app:${MONGO_PW}@db:27017/", "database": "d", "collection": "c",
            "key": ["id"]}}, env={"MONGO_PW": "s3cr3t-mongo"}).build_sink()
    prepare_for_workers("dataflow", sink=sink)
    assert b"s3cr3t-mongo" not in pickle.dumps(sink.write("run1"))


class _LeakyFn(beam.DoFn):
    def __init__(self, dsn):
        self.dsn = dsn

    def process(self, element):
        yield element


def test_find_secrets_looks_inside_pickled_functions_and_options():
    p = beam.Pipeline(options=pipeline_options("portable", {"job_endpoint": "localhost:1"}, job_name="osmosis-x-1"))
    p | beam.Create([1]) | "Leaky" >> beam.ParDo(_LeakyFn("postgresql://app:pw-in-a-dofn-99@db/x"))
    assert find_secrets(p, ["pw-in-a-dofn-99", "never-anywhere-77", "short"]) == [0]
    assert find_secrets(p, [Secret("osmosis-x-1")]) == [0]  # the job name is searched too
    safe = beam.Pipeline(options=pipeline_options("portable", {"job_endpoint": "localhost:1"}))
    safe | beam.Create([1]) | beam.ParDo(_LeakyFn(Secret("pw-in-a-dofn-99", env="${X}").for_workers()))
    assert find_secrets(safe, ["pw-in-a-dofn-99"]) == []


# -- SyncRunner ------------------------------------------------------------------------------------------------------------------
def test_yaml_runner_options_belong_to_the_yaml_runner(tmp_path):
    s = spec(runner={"name": "dataflow", "options": DATAFLOW})
    store = SQLiteStateStore(tmp_path / "state.db")
    assert SyncRunner(s, store, home=tmp_path, runner="direct").runner_options == {}
    assert SyncRunner(s, store, home=tmp_path).runner_options == DATAFLOW
    assert SyncRunner(s, store, home=tmp_path, runner="dataflow", runner_options={"region": "us-east1"}).runner_options == {
        **DATAFLOW, "region": "us-east1"}


def test_a_remote_run_with_a_literal_secret_fails_before_anything_is_recorded(tmp_path):
    s = spec({"password": "hunter2hunter2"}, runner={"name": "portable", "options": {"job_endpoint": "localhost:1"}})
    store = SQLiteStateStore(tmp_path / "state.db")
    with pytest.raises(ConfigError, match="source.password: this secret is written in the pipeline file"):
        SyncRunner(s, store, home=tmp_path).run()
    assert store.list_runs("orders") == [] and store.get_lease("orders") is None


def test_bad_runner_options_fail_before_anything_is_recorded(tmp_path):
    s = spec(runner={"name": "flink", "options": {"flink_master": "localhost:8081", "flink_version": "0.9"}})
    store = SQLiteStateStore(tmp_path / "state.db")
    with pytest.raises(ConfigError, match=f"flink_version: '0.9' is not one Beam {re.escape(beam.__version__)} supports"):
        SyncRunner(s, store, home=tmp_path).run()
    assert store.list_runs("orders") == []



# -- secret stores -----------------------------------------------------------------------------------------------------------------
def test_workers_read_a_missing_variable_from_the_secret_store(monkeypatch):
    import osmosis_beam.core.secrets as secrets

    asked = []

    def fake_store(where, name):
        asked.append((where, name))
        return f"from-store-{name.lower()}"

    monkeypatch.setitem(secrets._STORES, "gcp", fake_store)
    monkeypatch.setattr(secrets, "_STORE_CACHE", {})
    connector = spec({"password": "${OSMOSIS_UNIT_STORED}"}, env={"OSMOSIS_UNIT_STORED": "launcher-1"}).build_connector()
    prepare_for_workers("dataflow", store="gcp:acme-data", source=connector)
    data = pickle.dumps(connector)
    assert b"launcher-1" not in data and b"gcp:acme-data" in data
    monkeypatch.delenv("OSMOSIS_UNIT_STORED", raising=False)
    assert pickle.loads(data).config["password"].reveal() == "from-store-osmosis_unit_stored"
    assert pickle.loads(data).config["password"].reveal() == "from-store-osmosis_unit_stored"
    assert asked == [("acme-data", "OSMOSIS_UNIT_STORED")]  # read once per worker process
    monkeypatch.setenv("OSMOSIS_UNIT_STORED", "worker-env-wins")
    assert pickle.loads(data).config["password"].reveal() == "worker-env-wins"


def test_the_gcp_store_reads_the_latest_version_of_the_secret_named_like_the_variable(monkeypatch):
    try:
        from google.cloud import secretmanager
    except ImportError as exc:  # comes with apache-beam[gcp], which the test extra installs
        unavailable("google-cloud-secret-manager", str(exc))

    import osmosis_beam.core.secrets as secrets

    class FakeClient:
        def access_secret_version(self, name):
            assert name == "projects/acme-data/secrets/PG_PASSWORD/versions/latest"
            return type("R", (), {"payload": type("P", (), {"data": b"s3cr3t"})()})()

    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", FakeClient)
    assert secrets._gcp_secret("acme-data", "PG_PASSWORD") == "s3cr3t"


def test_a_store_that_cannot_answer_names_the_fix(monkeypatch):
    import osmosis_beam.core.secrets as secrets

    def broken(where, name):
        raise PermissionError("403 denied")

    monkeypatch.setitem(secrets._STORES, "gcp", broken)
    monkeypatch.setattr(secrets, "_STORE_CACHE", {})
    monkeypatch.delenv("OSMOSIS_UNIT_NOWHERE", raising=False)
    secret = Secret("v", env="${OSMOSIS_UNIT_NOWHERE}").for_workers("sink.uri", "gcp:acme-data")
    with pytest.raises(ConfigError) as err:
        pickle.loads(pickle.dumps(secret)).reveal()
    assert err.value.message == (
        "sink.uri: OSMOSIS_UNIT_NOWHERE is neither in this worker's environment nor readable from gcp:acme-data "
        "(PermissionError: 403 denied); create the secret OSMOSIS_UNIT_NOWHERE there and let the workers' service "
        "account read it (roles/secretmanager.secretAccessor)"
    )


def test_secret_store_option():
    opts = pipeline_options("dataflow", {**DATAFLOW, "secret_store": "gcp:acme-data"})
    assert "secret_store" not in chosen(opts)
    assert problems("dataflow", {**DATAFLOW, "secret_store": "vault"}) == [
        "runner dataflow: secret_store: 'vault' is not a secret store; use gcp:PROJECT_ID (Google Secret Manager)"]
    assert problems("direct", {"secret_store": "gcp:x"}) == [
        "runner direct: secret_store: only for remote runners (the direct runner's workers get the values)"]


def test_jsonl_output_is_refused_on_dataflow(tmp_path):
    s = spec({"password": "${PW}"}, env={"PW": "x"}, runner={"name": "dataflow", "options": DATAFLOW})
    store = SQLiteStateStore(tmp_path / "state.db")
    with pytest.raises(ConfigError, match="sink.type: the jsonl sink writes files on the machine that runs it"):
        SyncRunner(s, store, home=tmp_path).run()
    assert store.list_runs("orders") == []


def test_an_installed_package_without_a_source_tree_still_reaches_the_workers(tmp_path):
    """Installed from a wheel there is no setup.py: one is written beside a copy of the package."""
    import subprocess
    import sys
    import tarfile

    from osmosis_beam.runners.packaging import (
        installed_package_setup as _installed_package_setup,
    )

    setup_py = _installed_package_setup()
    assert setup_py != package_setup_file()  # this checkout uses its own setup.py
    built = subprocess.run([sys.executable, setup_py, "-q", "sdist", "--dist-dir", str(tmp_path)],
                           cwd=os.path.dirname(setup_py), capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    [sdist] = tmp_path.glob("osmosis*beam-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        info = tar.extractfile([m for m in tar.getmembers() if m.name.endswith("/PKG-INFO")][0]).read().decode()
    assert {"osmosis_beam/sync/runner.py", "osmosis_beam/runners/options.py", "osmosis_beam/io/postgres/source.py", "osmosis_beam/py.typed"} <= names
    assert "Requires-Dist: apache-beam" in info or "apache-beam" in open(setup_py).read()


# -- spark and prism -------------------------------------------------------------------------------------------
def test_spark_through_a_job_server_with_loopback_workers():
    opts = pipeline_options("spark", {"job_endpoint": "localhost:8099", "spark_master_url": "spark://127.0.0.1:7077"},
                            job_name="osmosis-a-1")
    got = chosen(opts)
    assert (got["runner"], got["job_endpoint"], got["spark_master_url"]) == ("SparkRunner", "localhost:8099",
                                                                            "spark://127.0.0.1:7077")
    assert (got["environment_type"], got["job_name"]) == ("LOOPBACK", "osmosis-a-1")


def test_a_remote_spark_job_server_defaults_to_docker_workers_with_the_package_staged():
    opts = pipeline_options("spark", {"job_endpoint": "spark-jobserver.internal:8099",
                                      "spark_master_url": "spark://spark.internal:7077"})
    assert opts.view_as(PortableOptions).environment_type == "DOCKER"
    assert opts.get_all_options()["setup_file"].endswith("setup.py")


def test_spark_problems_at_once(tmp_path):
    assert problems("spark", {"spark_master_url": "yarn", "spark_version": "2", "job_endpoint": "nohost",
                              "spark_job_server_jar": str(tmp_path / "nope.jar"), "workers": 2}) == [
        "runner spark: workers: only for the direct runner; use the Spark workers' cores (SPARK_WORKER_CORES)",
        "runner spark: spark_version: '2' is not one Beam 2.62.0 supports; use 3 (Spark 3.x)",
        "runner spark: spark_master_url: must be spark://host:port of a standalone Spark master, or local[N] for an "
        "in-process Spark, got 'yarn'",
        "runner spark: job_endpoint: must be host:port of a Beam Spark job server, got 'nohost'",
        f"runner spark: spark_job_server_jar: no such file '{tmp_path / 'nope.jar'}'; give the path (or http URL) of "
        "beam-runners-spark-3-job-server-2.62.0.jar, or the job_endpoint of a Spark job server",
    ]
    assert problems("spark", {"spark_master_url": "spark://:7077"}) == [
        "runner spark: spark_master_url: must be spark://host:port of the Spark master (e.g. spark://spark:7077), "
        "got 'spark://:7077'"
    ]


def test_prism_takes_a_binary_and_checks_it(tmp_path):
    binary = tmp_path / "prism"
    binary.write_text("#!/bin/sh\n")
    assert problems("prism", {"prism_location": str(binary)}) == [
        f"runner prism: prism_location: '{binary}' is not executable (chmod +x it)"
    ]
    binary.chmod(0o755)
    got = chosen(pipeline_options("prism", {"prism_location": str(binary), "job_timeout": "5m"}))
    assert (got["runner"], got["prism_location"], got["environment_type"]) == ("PrismRunner", str(binary), "LOOPBACK")
    assert "job_timeout" not in got  # osmosis's own option never reaches Beam


def test_the_postgres_sinks_write_target_carries_the_dsn_by_name_for_remote_workers(monkeypatch):
    dsn = "postgresql://loader:launcher-pw-1@127.0.0.1:5/dw"
    sink = parse_pipeline(
        {"id": "orders", "source": {"type": SYNTH},
         "sink": {"type": "postgres", "dsn": "${OSMOSIS_UNIT_DSN}", "table": "orders", "key": ["id"]}},
        env={"OSMOSIS_UNIT_DSN": dsn}).build_sink()
    prepare_for_workers("flink", sink=sink)
    target = sink._target()  # what the sink's write step (WritePostgres) pickles for the workers
    assert target.dsn == dsn  # the launcher keeps its value
    data = pickle.dumps(target)
    assert b"launcher-pw-1" not in data and b"${OSMOSIS_UNIT_DSN}" in data
    monkeypatch.setenv("OSMOSIS_UNIT_DSN", "postgresql://loader:worker-pw-2@db:5432/dw")
    assert pickle.loads(data).dsn == "postgresql://loader:worker-pw-2@db:5432/dw"


def test_the_flink_rest_address_comes_from_flink_master():
    from osmosis_beam.runners.flink import flink_rest_url

    assert flink_rest_url({"flink_master": "localhost:8081"}) == "http://localhost:8081"
    assert flink_rest_url({"flink_master": "https://flink.internal:8443/"}) == "https://flink.internal:8443"
    assert flink_rest_url({"flink_master": "localhost:8081"}, ["--flink_master=jm:9081"]) == "http://jm:9081"
    assert flink_rest_url({}) is None  # [auto]: Beam's embedded Flink, nothing to cancel through REST
