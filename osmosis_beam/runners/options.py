"""Runner choice and pipeline options: direct (in-process), portable, flink, spark, prism, dataflow.

One pipeline YAML runs anywhere; the runner is chosen by name (``runner: {name, options}`` in the
YAML, ``osmosis run --runner NAME``, or the launcher) and Beam arguments pass through after ``--``
(``--job-endpoint`` and ``--job_endpoint`` are the same flag). What each runner gets:

- ``direct``: Beam's in-process FnApiRunner (the default DirectRunner would try to download Prism).
  ``workers: N`` runs N worker processes (``direct_running_mode=multi_processing``). Without it, a
  zero-decode read of several splits runs them on ``min(splits, cores)`` threads
  (:func:`direct_read_threads`); a typed read stays on one thread.
- ``portable``: any Beam job service (``job_endpoint: host:port``); workers are LOOPBACK (this
  process) unless ``environment_type`` says EXTERNAL (a worker pool), DOCKER or PROCESS.
- ``flink``: Beam's FlinkRunner (``flink_master``, ``flink_version``, ``flink_job_server_jar``,
  ``parallelism``); batch, so checkpointing stays off. Flink versions are those Beam 2.62 supports.
- ``spark``: Beam's SparkRunner (``spark_master_url: spark://host:7077``, or ``job_endpoint`` of a Beam
  Spark job server someone runs, ``spark_job_server_jar``).
- ``prism``: Beam's Prism runner, a local portable runner that splits dynamically (``prism_location``:
  the path of a ``prism`` binary, built with ``go install``).
- ``dataflow``: Beam's DataflowRunner (``project``, ``region``, ``temp_location`` required).

Remote runners (portable, flink, spark, prism, dataflow) get a job name from the pipeline id and run id, the
osmosis-beam package staged for workers that install it (``--setup_file``), no pickled main
session, and two osmosis options: ``job_timeout`` (cancel the job and fail the run after this
long) and ``secret_store`` (``gcp:PROJECT``: workers read the variables their environment lacks
from Google Secret Manager). On ``spark``, ``spark_ui`` (``host:port`` of the Spark driver's web UI,
default port 4040 of the job server's host) is where the live progress reads a running job's counters. Secrets reach remote workers only as ``${VAR}`` text
(:func:`prepare_for_workers`), and :func:`find_secrets` proves no secret value is in a job.

Example::

    from osmosis_beam.runners.options import make_pipeline
    p = make_pipeline("direct")                    # a beam.Pipeline on the in-process runner
    p = make_pipeline("portable", {"job_endpoint": "localhost:8099"})
    p = make_pipeline("dataflow", {"project": "acme", "region": "europe-west1",
                                   "temp_location": "gs://acme-tmp/osmosis"}, ["--max_num_workers=20"])
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import urllib.parse
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    SetupOptions,
    SparkRunnerOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.secrets import (
    Secret,
    check_secret_store,
    is_secret_name,
)
from osmosis_beam.runners.dataflow import check_dataflow_options
from osmosis_beam.runners.packaging import staging_args

__all__ = [
    "RUNNERS",
    "REMOTE_RUNNERS",
    "FLINK_VERSIONS",
    "make_pipeline",
    "pipeline_options",
    "direct_read_threads",
    "thread_direct_reads",
    "in_process_pipeline",
    "is_remote",
    "is_dry_run",
    "job_timeout",
    "secret_store",
    "spark_ui_option",
    "job_name",
    "job_labels",
]

log = logging.getLogger(__name__)
from osmosis_beam.config import RUNNERS  # noqa: E402 - the one list of runner names

REMOTE_RUNNERS = frozenset({"portable", "flink", "spark", "prism", "dataflow"})
ENVIRONMENT_TYPES = ("LOOPBACK", "EXTERNAL", "DOCKER", "PROCESS")
FLINK_VERSIONS = tuple(FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS)
DIRECT_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
_BEAM_RUNNER = {"portable": "PortableRunner", "flink": "FlinkRunner", "spark": "SparkRunner", "prism": "PrismRunner",
                "dataflow": "DataflowRunner"}
_BEAM_VERSION = beam.__version__
# Options osmosis reads itself; they never reach Beam.
_OSMOSIS_OPTIONS = ("job_timeout", "workers", "secret_store", "spark_ui")
_HOST_PORT = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
_MAX_NAME = 63  # a Dataflow job name may be longer, but a label value may not, and short names read well


# -- flags -----------------------------------------------------------------------------------------
def _flag_name(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def _flags(key: str, value: Any) -> list[str]:
    """YAML ``key: value`` as Beam flags: lists repeat the flag, ``labels`` maps become ``k=v`` each."""
    name = "--" + _flag_name(key)
    if isinstance(value, Secret):
        raise ConfigError(f"runner.options.{key}: a secret cannot be a pipeline option (options are visible in the job)")
    if value is True:
        return [name]
    if value is False or value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [f"{name}={item}" for item in value]
    if isinstance(value, Mapping):
        if _flag_name(key) == "labels":
            return [f"{name}={k}={v}" for k, v in value.items()]
        return [f"{name}={json.dumps(dict(value))}"]
    return [f"{name}={value}"]


def _normalize(args: Sequence[str]) -> list[str]:
    """``--job-endpoint x`` -> ``--job_endpoint x``: Beam only knows the underscore spelling."""
    out = []
    for arg in args:
        arg = str(arg)
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + eq + value
        out.append(arg)
    return out


def _flag_values(args: Sequence[str], name: str) -> list[str | None]:
    """Every value given for ``--name`` in ``args`` (``--name=v`` or ``--name v``; None for a bare flag)."""
    found: list[str | None] = []
    for i, arg in enumerate(args):
        if arg == f"--{name}":
            nxt = args[i + 1] if i + 1 < len(args) else None
            found.append(nxt if nxt is not None and not nxt.startswith("--") else None)
        elif arg.startswith(f"--{name}="):
            found.append(arg.split("=", 1)[1])
    return found


def _last(args: Sequence[str], name: str) -> str | None:
    values = _flag_values(args, name)
    return values[-1] if values else None


def _without(args: Sequence[str], name: str) -> list[str]:
    """``args`` without ``--name`` (and its separate value)."""
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == f"--{name}":
            nxt = args[i + 1] if i + 1 < len(args) else None
            skip = nxt is not None and not nxt.startswith("--")
            continue
        if arg.startswith(f"--{name}="):
            continue
        out.append(arg)
    return out


def _split_osmosis(options: Mapping[str, Any] | None, args: list[str]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(Beam options, osmosis options, Beam args): osmosis options may come from either place."""
    beam_opts: dict[str, Any] = {}
    ours: dict[str, Any] = {}
    for key, value in (options or {}).items():
        name = _flag_name(str(key))
        if name in _OSMOSIS_OPTIONS:
            ours[name] = value
        else:
            beam_opts[key] = value
    for name in _OSMOSIS_OPTIONS:
        values = _flag_values(args, name)
        if values:
            ours[name] = values[-1]
            args = _without(args, name)
    return beam_opts, ours, args


def _parse(args: list[str]) -> PipelineOptions:
    """PipelineOptions that never exit the process: argparse errors become a ConfigError."""
    opts = PipelineOptions(args)
    try:
        for view in (StandardOptions, PortableOptions, DirectOptions, FlinkRunnerOptions, SparkRunnerOptions,
                     PrismRunnerOptions, GoogleCloudOptions, SetupOptions, WorkerOptions, TestOptions):
            opts.view_as(view)
    except SystemExit:
        raise ConfigError(f"Beam rejected the runner arguments {' '.join(args)} (see the message above)") from None
    return opts


# -- the options per runner ---------------------------------------------------------------------------
def pipeline_options(
    runner: str,
    options: Mapping[str, Any] | None = None,
    beam_args: Sequence[str] = (),
    *,
    job_name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> PipelineOptions:
    """PipelineOptions for ``runner``: YAML ``runner.options`` first, then ``beam_args`` (which win).

    ``job_name`` and ``labels`` (Dataflow) are defaults the user's own options override. Every problem
    is reported at once as a :class:`ConfigError`; osmosis's own options (``job_timeout``, ``workers``,
    ``secret_store``) are taken out, from either place.
    """
    if runner not in RUNNERS:
        raise ConfigError(f"unknown runner {runner!r}; known: {', '.join(RUNNERS)}")
    beam_opts, ours, args = _split_osmosis(options, _normalize(beam_args))
    flags: list[str] = []
    for key, value in beam_opts.items():
        flags += _flags(str(key), value)
    args = flags + args
    problems: list[str] = []
    _check_common(runner, args, ours, problems)
    if runner == "flink":
        version = _last(args, "flink_version")
        if version is not None and version not in FLINK_VERSIONS:
            problems.append(f"flink_version: {version!r} is not one Beam {beam.__version__} supports; use one of {', '.join(FLINK_VERSIONS)}")
            args = _without(args, "flink_version")
    if runner == "spark":
        version = _last(args, "spark_version")
        if version is not None and version != "3":
            problems.append(f"spark_version: {version!r} is not one Beam {_BEAM_VERSION} supports; use 3 (Spark 3.x)")
            args = _without(args, "spark_version")
    if runner == "direct":
        mode = _last(args, "direct_running_mode")
        if mode is not None and mode not in DIRECT_RUNNING_MODES:
            problems.append(f"direct_running_mode: must be one of {', '.join(DIRECT_RUNNING_MODES)}, got {mode!r}")
            args = _without(args, "direct_running_mode")
    parsed = _parse(args)
    if runner == "direct":
        args += _direct(parsed, args, ours, problems)
    else:
        args += _remote(runner, parsed, args, job_name, labels, problems)
    if not _flag_values(args, "pickle_library"):
        # Beam 2.62 defaults to dill, which cannot pickle a class defined in a function (a connector or step
        # a user writes inline); cloudpickle, Beam's later default, pickles it by value. Workers take the
        # choice from the job's options.
        args.append("--pickle_library=cloudpickle")
    if problems:
        raise ConfigError(problems=[f"runner {runner}: {p}" for p in problems])
    if runner in _BEAM_RUNNER:
        args = [f"--runner={_BEAM_RUNNER[runner]}", *args]
    return PipelineOptions(args)


def _check_common(runner: str, args: list[str], ours: Mapping[str, Any], problems: list[str]) -> None:
    if _flag_values(args, "runner"):
        problems.append("choose the runner by name (--runner on `osmosis run`, or runner.name in the YAML), not with Beam's --runner")
    if _flag_values(args, "streaming"):
        problems.append("--streaming: a sync run is a bounded batch job; remove it")
    if runner != "dataflow" and any(str(v).lower() in ("true", "1", "yes", "none") for v in _flag_values(args, "dry_run")):
        problems.append("--dry_run: only the dataflow runner builds a job without running it (other runners would run it)")
    if runner in REMOTE_RUNNERS and "job_timeout" in ours:
        try:
            job_timeout(ours)
        except ConfigError as exc:
            problems.append(exc.message)
    if ours.get("secret_store") is not None:
        if runner not in REMOTE_RUNNERS:
            problems.append("secret_store: only for remote runners (the direct runner's workers get the values)")
        else:
            try:
                check_secret_store(ours["secret_store"])
            except ValueError as exc:
                problems.append(str(exc))
    if ours.get("spark_ui") is not None:
        ui = str(ours["spark_ui"]).strip()
        if runner != "spark":
            problems.append("spark_ui: only for the spark runner (where its live progress reads the driver's web UI)")
        elif not (_HOST_PORT.match(ui) or re.match(r"^https?://[^/\s]+/?$", ui)):
            problems.append(f"spark_ui: must be host:port (or http://host:port) of the Spark driver's web UI, got {ui!r}")
    if runner in REMOTE_RUNNERS:
        for arg in args:
            if arg.startswith("--"):
                name = arg[2:].split("=", 1)[0]
                if is_secret_name(name) or "connection_string" in name:
                    problems.append(
                        f"--{name}: looks like a secret; pipeline options are part of the job and shown in the "
                        "runner's UI. Give the workers that credential through their environment or a secret manager"
                    )
        if "workers" in ours:
            hint = {"flink": "parallelism", "dataflow": "num_workers / max_num_workers", "portable": "sdk_worker_parallelism",
                    "spark": "the Spark workers' cores (SPARK_WORKER_CORES)", "prism": "sdk_worker_parallelism"}
            problems.append(f"workers: only for the direct runner; use {hint[runner]}")


def _direct(parsed: PipelineOptions, args: list[str], ours: Mapping[str, Any], problems: list[str]) -> list[str]:
    extra: list[str] = []
    if "job_timeout" in ours:
        problems.append("job_timeout: the in-process runner cannot be stopped mid-job; it applies to the other runners")
    if "workers" not in ours:
        return extra
    raw = ours["workers"]
    try:
        workers = int(raw)
        if isinstance(raw, bool) or workers < 1 or str(workers) != str(raw).strip():
            raise ValueError
    except (TypeError, ValueError):
        problems.append(f"workers: must be a whole number of at least 1, got {raw!r}")
        return extra
    given = _last(args, "direct_num_workers")
    if given is not None and given != str(workers):
        problems.append(f"workers: {workers} disagrees with --direct_num_workers={given}; give one of them")
    extra.append(f"--direct_num_workers={workers}")
    if workers > 1 and _last(args, "direct_running_mode") is None:
        # Processes, not threads: connectors and steps are plain Python, and the GIL would serialise them.
        # Safe because workers never touch the state store, each worker opens its own source connection
        # (DoFn.setup), and sinks stage one uniquely named part file per bundle.
        extra.append("--direct_running_mode=multi_processing")
    return extra


def direct_read_threads(
    options: Mapping[str, Any] | None, beam_args: Sequence[str], *, encoded: bool, splits: int
) -> int:
    """How many threads the direct runner reads on when the run does not say: 1, or more on the zero-decode path.

    A zero-decode read spends its time in the server, the socket and C code (COPY, orjson, pyarrow), not in
    Python, so its splits run side by side on threads of this process: ``min(splits, CPU cores)``. A typed read
    holds the GIL and stays on one thread. Any ``workers``, ``direct_num_workers`` or ``direct_running_mode``
    the run gives wins (``workers: 1`` keeps one thread).
    """
    if not encoded or splits < 2:
        return 1
    args = _normalize(beam_args)
    given = {_flag_name(str(key)) for key in (options or {})}
    if given & {"workers", "direct_num_workers", "direct_running_mode"}:
        return 1
    if any(_flag_values(args, name) for name in ("workers", "direct_num_workers", "direct_running_mode")):
        return 1
    return max(1, min(splits, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def thread_direct_reads(options: PipelineOptions, threads: int) -> None:
    """Give the in-process runner ``threads`` worker threads (``direct_running_mode=multi_threading``)."""
    if threads > 1:
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = threads
        direct.direct_running_mode = "multi_threading"


def _remote(
    runner: str,
    parsed: PipelineOptions,
    args: list[str],
    name: str | None,
    labels: Mapping[str, str] | None,
    problems: list[str],
) -> list[str]:
    extra: list[str] = []
    if runner == "portable":
        endpoint = parsed.view_as(PortableOptions).job_endpoint
        if not endpoint:
            problems.append(
                "job_endpoint: required, the host:port of a Beam job service "
                "(runner.options.job_endpoint, or -- --job_endpoint=localhost:8099)"
            )
        elif endpoint != "embed" and not _HOST_PORT.fullmatch(endpoint):
            problems.append(f"job_endpoint: must be host:port, got {endpoint!r}")
        env_type = _environment(parsed, "LOOPBACK", extra, problems)
    elif runner == "flink":
        env_type = _flink(parsed, args, extra, problems)
    elif runner == "spark":
        env_type = _spark(parsed, extra, problems)
    elif runner == "prism":
        env_type = _prism(parsed, extra, problems)
    else:
        env_type = "DOCKER"
        check_dataflow_options(parsed, problems)
    if name and not parsed.view_as(GoogleCloudOptions).job_name:
        extra.append(f"--job_name={name}")
    if runner == "dataflow" and labels:
        given = {str(item).split("=", 1)[0] for item in (parsed.view_as(GoogleCloudOptions).labels or [])}
        extra += [f"--labels={k}={v}" for k, v in labels.items() if k not in given]
    if not _flag_values(args, "save_main_session") and not _flag_values(args, "no_save_main_session"):
        # Everything a worker needs is in the package; the main session could hold anything.
        extra.append("--no_save_main_session")
    if env_type in ("DOCKER", "PROCESS"):
        extra += staging_args(runner, parsed, problems)
    return extra


def _environment(parsed: PipelineOptions, default: str, extra: list[str], problems: list[str]) -> str:
    portable = parsed.view_as(PortableOptions)
    env_type = (portable.environment_type or "").upper()
    if not env_type:
        env_type = default
        extra.append(f"--environment_type={default}")
    elif env_type not in ENVIRONMENT_TYPES:
        problems.append(f"environment_type: must be one of {', '.join(ENVIRONMENT_TYPES)}, got {portable.environment_type!r}")
    config = portable.environment_config
    if env_type == "EXTERNAL" and not (config and _HOST_PORT.fullmatch(config)):
        problems.append(
            "environment_config: EXTERNAL workers need the host:port of a worker pool "
            "(python -m apache_beam.runners.worker.worker_pool_main --service_port=50000)"
        )
    if env_type == "PROCESS" and not (config or portable.environment_options):
        problems.append('environment_config: PROCESS workers need {"command": "/path/to/beam/boot"}')
    return env_type


def _check_jar(option: str, jar: str | None, wanted: str, problems: list[str]) -> None:
    """A job-server jar option names an existing file or an http(s) URL."""
    if jar and not os.path.isfile(jar) and not urllib.parse.urlsplit(jar).scheme.startswith("http"):
        problems.append(f"{option}: no such file {jar!r}; give the path (or http URL) of {wanted}")


def _flink(parsed: PipelineOptions, args: list[str], extra: list[str], problems: list[str]) -> str:
    flink = parsed.view_as(FlinkRunnerOptions)
    master = (flink.flink_master or "[auto]").strip()
    host = None
    if master not in ("[local]", "[auto]"):
        parts = urllib.parse.urlsplit(master if "://" in master else f"http://{master}")
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host or parts.port is None:
            problems.append(f"flink_master: must be host:port of the Flink REST endpoint (JobManager, e.g. flink:8081), got {master!r}")
    jar = flink.flink_job_server_jar
    _check_jar("flink_job_server_jar", jar, f"beam-runners-flink-{flink.flink_version}-job-server-{_BEAM_VERSION}.jar",
               problems)
    for option in ("parallelism", "max_parallelism"):
        value = getattr(flink, option)
        if value is not None and value != -1 and value < 1:
            problems.append(f"{option}: must be at least 1 (or -1 for Flink's default), got {value}")
    for value in _flag_values(args, "checkpointing_interval"):
        try:
            on = value is not None and int(value) > 0
        except ValueError:
            on = True
        if on:
            problems.append(
                "checkpointing_interval: a sync run is a batch job and Flink runs it without checkpoints; "
                "the launcher commits after the job is DONE. Remove it"
            )
    if not _flag_values(args, "checkpointing_interval"):
        extra.append("--checkpointing_interval=-1")
    if not jar and not parsed.view_as(PortableOptions).job_endpoint:
        log.info(
            "flink: no flink_job_server_jar given; Beam downloads beam-runners-flink-%s-job-server from Maven Central",
            flink.flink_version,
        )
    # TaskManagers on this machine can reach a LOOPBACK worker in this process; remote ones cannot.
    local = host is None or host in _LOCAL_HOSTS
    return _environment(parsed, "LOOPBACK" if local else "DOCKER", extra, problems)


def _spark(parsed: PipelineOptions, extra: list[str], problems: list[str]) -> str:
    spark = parsed.view_as(SparkRunnerOptions)
    endpoint = parsed.view_as(PortableOptions).job_endpoint
    master = (spark.spark_master_url or "").strip()
    host = None
    if re.fullmatch(r"local(\[(\*|[0-9]+)\])?", master):
        pass
    elif master.startswith("spark://"):
        parts = urllib.parse.urlsplit(master)
        host = parts.hostname
        try:
            port = parts.port
        except ValueError:
            port = None
        if not host or port is None:
            problems.append(f"spark_master_url: must be spark://host:port of the Spark master (e.g. spark://spark:7077), got {master!r}")
    else:
        problems.append(
            f"spark_master_url: must be spark://host:port of a standalone Spark master, or local[N] for an "
            f"in-process Spark, got {master!r}"
        )
    if endpoint and not _HOST_PORT.fullmatch(endpoint):
        problems.append(f"job_endpoint: must be host:port of a Beam Spark job server, got {endpoint!r}")
    jar = spark.spark_job_server_jar
    _check_jar("spark_job_server_jar", jar,
               f"beam-runners-spark-3-job-server-{_BEAM_VERSION}.jar, or the job_endpoint of a Spark job server", problems)
    if spark.spark_submit_uber_jar:
        problems.append("spark_submit_uber_jar: not supported by osmosis (the run could not be cancelled); "
                        "use a Spark job server (job_endpoint) or spark_job_server_jar")
    if not jar and not endpoint:
        log.info("spark: no job_endpoint or spark_job_server_jar given; Beam downloads "
                 "beam-runners-spark-3-job-server-%s.jar from Maven Central", _BEAM_VERSION)
    if endpoint:
        # The job server decides where the job runs; its host tells whether workers can reach this process.
        host = endpoint.rsplit(":", 1)[0].strip("[]")
    local = host is None or host in _LOCAL_HOSTS
    return _environment(parsed, "LOOPBACK" if local else "DOCKER", extra, problems)


def _prism(parsed: PipelineOptions, extra: list[str], problems: list[str]) -> str:
    location = parsed.view_as(PrismRunnerOptions).prism_location
    if location and not urllib.parse.urlsplit(location).scheme.startswith("http"):
        if not os.path.isfile(location):
            problems.append(
                f"prism_location: no such file {location!r}; build the binary with `go install "
                f"github.com/apache/beam/sdks/v2/go/cmd/prism@v{_BEAM_VERSION}` and give its path (~/go/bin/prism)"
            )
        elif not os.access(location, os.X_OK):
            problems.append(f"prism_location: {location!r} is not executable (chmod +x it)")
    if not location and not parsed.view_as(PortableOptions).job_endpoint:
        log.info("prism: no prism_location given; Beam downloads the prism binary of %s from GitHub", _BEAM_VERSION)
    return _environment(parsed, "LOOPBACK", extra, problems)


# -- osmosis's own options and names ----------------------------------------------------------------------
def is_remote(runner: str) -> bool:
    """Whether ``runner``'s workers may run outside this process (everything but ``direct``)."""
    return runner in REMOTE_RUNNERS


def is_dry_run(options: PipelineOptions | None) -> bool:
    """Whether ``options`` ask Dataflow to build the job without submitting it (``--dry_run=True``)."""
    if options is None:
        return False
    value = options.view_as(TestOptions).dry_run
    return str(value).strip().lower() in ("true", "1", "yes")


def job_timeout(options: Mapping[str, Any] | None, beam_args: Sequence[str] = ()) -> float | None:
    """Seconds from ``job_timeout`` (``30m``, ``2h``, a number of seconds), or None for no limit.

    Read from the runner options and from ``--job_timeout`` among ``beam_args`` (which wins).
    """
    from osmosis_beam.core.timefmt import parse_duration

    _, ours, _ = _split_osmosis(options, _normalize(beam_args))
    raw = ours.get("job_timeout")
    if raw is None or raw == "":
        return None
    try:
        seconds = parse_duration(raw).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"job_timeout: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"job_timeout: must be longer than 0s, got {raw!r}")
    return seconds


def secret_store(options: Mapping[str, Any] | None, beam_args: Sequence[str] = ()) -> str | None:
    """The ``secret_store`` runner option (``gcp:PROJECT``): where workers look for variables they lack."""
    _, ours, _ = _split_osmosis(options, _normalize(beam_args))
    return str(ours["secret_store"]) if ours.get("secret_store") else None


def spark_ui_option(options: Mapping[str, Any] | None, beam_args: Sequence[str] = ()) -> str | None:
    """The ``spark_ui`` runner option (``host:port`` of the Spark driver's web UI), or None."""
    _, ours, _ = _split_osmosis(options, _normalize(beam_args))
    return str(ours["spark_ui"]).strip() if ours.get("spark_ui") else None


def _slug(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", str(text).lower())).strip("-")


def job_name(pipeline_id: str, run_id: str) -> str:
    """``osmosis-<pipeline>-<run>``: valid for Dataflow (lowercase letters, digits, '-'; starts with a letter).

    At most 63 characters; a long pipeline id is shortened and keeps a hash, so names stay distinct.
    """
    pid, rid = _slug(pipeline_id) or "pipeline", _slug(run_id) or "run"
    room = _MAX_NAME - len("osmosis--") - len(rid)
    if len(pid) > room:
        digest = hashlib.sha1(pipeline_id.encode("utf-8")).hexdigest()[:6]
        pid = f"{pid[: max(1, room - 7)].rstrip('-')}-{digest}"
    return f"osmosis-{pid}-{rid}"[:_MAX_NAME].rstrip("-")


def job_labels(pipeline_id: str, run_id: str) -> dict[str, str]:
    """Dataflow labels naming the pipeline and the run (valid label values: ``[a-z0-9_-]``, 63 at most)."""

    def value(text: str) -> str:
        return re.sub(r"[^a-z0-9_-]+", "-", str(text).lower())[:_MAX_NAME]

    return {"osmosis-pipeline": value(pipeline_id), "osmosis-run": value(run_id)}


# -- secrets ------------------------------------------------------------------------------------------------


# -- Dataflow dry runs -------------------------------------------------------------------------------------


# -- pipelines -------------------------------------------------------------------------------------------
def make_pipeline(
    runner: str = "direct",
    options: Mapping[str, Any] | None = None,
    beam_args: Sequence[str] = (),
    *,
    job_name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> beam.Pipeline:
    """A ``beam.Pipeline`` for ``runner``; ``direct`` uses the in-process FnApiRunner."""
    opts = pipeline_options(runner, options, beam_args, job_name=job_name, labels=labels)
    if runner == "direct":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=opts)
    return beam.Pipeline(options=opts)


@contextlib.contextmanager
def in_process_pipeline(beam_args: Sequence[str] = ()) -> Iterator[beam.Pipeline]:
    """``with in_process_pipeline() as p:`` builds and runs a pipeline on the in-process runner."""
    with make_pipeline("direct", beam_args=beam_args) as p:
        yield p

