"""Runner choice and pipeline options: direct (in-process), portable, flink, dataflow.

One pipeline YAML runs anywhere; the runner is chosen by name (``runner: {name, options}`` in the
YAML, ``osmosis run --runner NAME``, or the launcher) and Beam arguments pass through after ``--``
(``--job-endpoint`` and ``--job_endpoint`` are the same flag). What each runner gets:

- ``direct``: Beam's in-process FnApiRunner (the default DirectRunner would try to download Prism).
  ``workers: N`` runs N worker processes (``direct_running_mode=multi_processing``).
- ``portable``: any Beam job service (``job_endpoint: host:port``); workers are LOOPBACK (this
  process) unless ``environment_type`` says EXTERNAL (a worker pool), DOCKER or PROCESS.
- ``flink``: Beam's FlinkRunner (``flink_master``, ``flink_version``, ``flink_job_server_jar``,
  ``parallelism``); batch, so checkpointing stays off.
- ``dataflow``: Beam's DataflowRunner (``project``, ``region``, ``temp_location`` required).

Remote runners (portable, flink, dataflow) get a job name from the pipeline id and run id, the
osmosis-beam package staged for workers that install it (``--setup_file``), no pickled main
session, and two osmosis options: ``job_timeout`` (cancel the job and fail the run after this
long) and ``secret_store`` (``gcp:PROJECT``: workers read the variables their environment lacks
from Google Secret Manager). Secrets reach remote workers only as ``${VAR}`` text
(:func:`prepare_for_workers`), and :func:`find_secrets` proves no secret value is in a job.

Example::

    from osmosis_beam.runners import make_pipeline
    p = make_pipeline("direct")                    # a beam.Pipeline on the in-process runner
    p = make_pipeline("portable", {"job_endpoint": "localhost:8099"})
    p = make_pipeline("dataflow", {"project": "acme", "region": "europe-west1",
                                   "temp_location": "gs://acme-tmp/osmosis"}, ["--max_num_workers=20"])
"""
from __future__ import annotations

import base64
import binascii
import bz2
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import urllib.parse
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)

from osmosis_beam.exceptions import ConfigError
from osmosis_beam.secrets import Secret, check_secret_store, is_secret_name, redact_url, reveal

__all__ = [
    "RUNNERS",
    "REMOTE_RUNNERS",
    "FLINK_VERSIONS",
    "make_pipeline",
    "pipeline_options",
    "in_process_pipeline",
    "is_remote",
    "is_dry_run",
    "job_timeout",
    "secret_store",
    "job_name",
    "job_labels",
    "package_setup_file",
    "prepare_for_workers",
    "find_secrets",
    "check_no_secrets",
    "describe_dataflow_job",
]

log = logging.getLogger(__name__)
from osmosis_beam.config import RUNNERS  # noqa: E402 - the one list of runner names
REMOTE_RUNNERS = frozenset({"portable", "flink", "dataflow"})
ENVIRONMENT_TYPES = ("LOOPBACK", "EXTERNAL", "DOCKER", "PROCESS")
FLINK_VERSIONS = tuple(FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS)
DIRECT_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
_BEAM_RUNNER = {"portable": "PortableRunner", "flink": "FlinkRunner", "dataflow": "DataflowRunner"}
# Options osmosis reads itself; they never reach Beam.
_OSMOSIS_OPTIONS = ("job_timeout", "workers", "secret_store")
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
        for view in (StandardOptions, PortableOptions, DirectOptions, FlinkRunnerOptions, GoogleCloudOptions,
                     SetupOptions, WorkerOptions, TestOptions):
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
            problems.append(f"flink_version: {version!r} is not one Beam 2.77 supports; use one of {', '.join(FLINK_VERSIONS)}")
            args = _without(args, "flink_version")
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
            hint = {"flink": "parallelism", "dataflow": "num_workers / max_num_workers", "portable": "sdk_worker_parallelism"}
            problems.append(f"workers: only for the direct runner; use {hint[runner]}")


def _direct(parsed: PipelineOptions, args: list[str], ours: Mapping[str, Any], problems: list[str]) -> list[str]:
    extra: list[str] = []
    if "job_timeout" in ours:
        problems.append("job_timeout: the in-process runner cannot be stopped mid-job; it applies to portable, flink and dataflow")
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
    else:
        env_type = "DOCKER"
        _dataflow(parsed, problems)
    if name and not parsed.view_as(GoogleCloudOptions).job_name:
        extra.append(f"--job_name={name}")
    if runner == "dataflow" and labels:
        given = {str(item).split("=", 1)[0] for item in (parsed.view_as(GoogleCloudOptions).labels or [])}
        extra += [f"--labels={k}={v}" for k, v in labels.items() if k not in given]
    setup = parsed.view_as(SetupOptions)
    if setup.save_main_session is None and not _flag_values(args, "no_save_main_session"):
        # Everything a worker needs is in the package; the main session could hold anything.
        extra.append("--no_save_main_session")
    if env_type in ("DOCKER", "PROCESS"):
        extra += _staging(runner, parsed, problems)
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
    if jar and not os.path.isfile(jar) and not urllib.parse.urlsplit(jar).scheme.startswith("http"):
        problems.append(
            f"flink_job_server_jar: no such file {jar!r}; give the path (or http URL) of "
            f"beam-runners-flink-{flink.flink_version}-job-server-2.77.0.jar"
        )
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


def _dataflow(parsed: PipelineOptions, problems: list[str]) -> None:
    gcp = parsed.view_as(GoogleCloudOptions)
    hints = {
        "project": "your Google Cloud project id (--project=my-project)",
        "region": "the region to run in (--region=europe-west1)",
        "temp_location": "a gs:// folder for temporary and staged files (--temp_location=gs://my-bucket/tmp)",
    }
    for option, hint in hints.items():
        if not getattr(gcp, option):
            problems.append(f"{option}: required, {hint}")
    if gcp.temp_location and not gcp.temp_location.startswith("gs://"):
        problems.append(f"temp_location: must be a gs:// path, got {gcp.temp_location!r}")
    if gcp.template_location:
        problems.append("template_location: osmosis submits each run and waits for it; templates are not supported")
    try:
        import apache_beam.runners.dataflow.internal.apiclient  # noqa: F401
    except ImportError:
        problems.append('the Google Cloud libraries are missing: pip install "osmosis-beam[gcp]"')


def package_setup_file() -> str | None:
    """A ``setup.py`` that builds the osmosis-beam package workers install (``--setup_file``).

    The source tree's own when osmosis-beam runs from one (``pip install -e``); else one written beside a
    copy of the installed package, with its install requirements, in a temporary folder.
    """
    import osmosis_beam

    candidate = Path(osmosis_beam.__file__).resolve().parent.parent / "setup.py"
    try:
        if candidate.is_file() and 'name="osmosis-beam"' in candidate.read_text(encoding="utf-8"):
            return str(candidate)
    except OSError:
        pass
    try:
        return _installed_package_setup()
    except OSError as exc:
        log.warning("could not prepare the osmosis-beam package for workers: %s", exc)
        return None


@functools.lru_cache(maxsize=None)
def _installed_package_setup() -> str:
    import atexit
    import shutil
    import tempfile
    from importlib import metadata

    import osmosis_beam

    root = Path(tempfile.mkdtemp(prefix="osmosis-beam-package-"))
    atexit.register(shutil.rmtree, root, True)
    shutil.copytree(Path(osmosis_beam.__file__).resolve().parent, root / "osmosis_beam",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    try:
        requires = [r for r in metadata.requires("osmosis-beam") or () if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        requires = []
    (root / "setup.py").write_text(
        "from setuptools import find_packages, setup\n"
        f"setup(name='osmosis-beam', version={osmosis_beam.__version__!r}, "
        "packages=find_packages(include=['osmosis_beam', 'osmosis_beam.*']), "
        f"package_data={{'osmosis_beam': ['py.typed']}}, install_requires={requires!r})\n",
        encoding="utf-8",
    )
    return str(root / "setup.py")


def _staging(runner: str, parsed: PipelineOptions, problems: list[str]) -> list[str]:
    """``--setup_file`` for workers that install staged packages (Docker and process environments)."""
    setup = parsed.view_as(SetupOptions)
    if setup.setup_file or parsed.view_as(WorkerOptions).sdk_container_image:
        return []  # the user's package build, or an image with osmosis-beam installed
    if any(Path(str(p)).name.startswith(("osmosis_beam", "osmosis-beam")) for p in setup.extra_packages or ()):
        return []
    found = package_setup_file()
    if found is None:
        problems.append(
            "the workers need the osmosis-beam package, and it could not be prepared here; pass "
            "--setup_file=/path/to/osmosis-beam/setup.py, or --extra_package=dist/osmosis_beam-VERSION.tar.gz "
            "(python -m build --sdist), or --sdk_container_image=IMAGE with osmosis-beam installed"
        )
        return []
    return [f"--setup_file={found}"]


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
    from osmosis_beam.timefmt import parse_duration

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
def prepare_for_workers(runner: str, *, store: str | None = None, **sections: Any) -> None:
    """Make the secrets in each object's ``config`` travel to ``runner``'s workers as ``${VAR}`` text only.

    ``prepare_for_workers("flink", source=connector, sink=sink)`` replaces, in place, every secret
    written with ``${VAR}`` s with a copy that pickles as that text (the launcher keeps the value);
    workers fill the variables in from their own environment. A secret written literally in the
    pipeline file (or a URL whose password is written out) would travel in the job: that is a
    :class:`ConfigError` naming each such option. Nothing changes for the direct runner. With
    ``store`` (``gcp:PROJECT``) a worker reads a variable its environment lacks from that store.
    """
    if not is_remote(runner):
        return
    problems: list[str] = []
    for section, obj in sections.items():
        config = getattr(obj, "config", None)
        if not isinstance(config, dict):
            continue
        pipeline_id = str(getattr(obj, "pipeline_id", "") or "")
        for key in list(config):
            config[key] = _by_reference(config[key], f"{section}.{key}", runner, pipeline_id, store, problems)
    if problems:
        raise ConfigError(problems=problems)


def _by_reference(value: Any, where: str, runner: str, pipeline_id: str, store: str | None, problems: list[str]) -> Any:
    if isinstance(value, Secret):
        if value.env_names and redact_url(value.env) == value.env:
            return value.for_workers(where, store)
        var = re.sub(r"[^A-Z0-9]+", "_", f"{pipeline_id}_{where.rsplit('.', 1)[-1]}".upper()).strip("_")
        what = "holds a password written out" if value.env_names else "is written in the pipeline file"
        problems.append(
            f"{where}: this secret {what}, so it would travel inside the {runner} job; write the secret part as "
            f"${{{var}}}, export {var} where osmosis runs and on the workers, or use the direct runner"
        )
        return value
    if isinstance(value, list):
        return [_by_reference(v, f"{where}[{i}]", runner, pipeline_id, store, problems) for i, v in enumerate(value, 1)]
    if isinstance(value, dict):
        return {k: _by_reference(v, f"{where}.{k}", runner, pipeline_id, store, problems) for k, v in value.items()}
    return value


_B64_RUN = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")
_MIN_SECRET = 6  # shorter values would match names and numbers in any job


def _unpacked(blob: bytes, depth: int = 0) -> Iterator[bytes]:
    """``blob`` and everything base64 / zlib / bz2 inside it (how Beam stores pickled functions)."""
    yield blob
    if depth >= 4:
        return
    for match in _B64_RUN.finditer(blob):
        chunk = match.group(0)
        try:
            raw = base64.b64decode(chunk + b"=" * (-len(chunk) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        for unpack in (zlib.decompress, bz2.decompress):
            try:
                inner = unpack(raw)
            except (zlib.error, OSError, ValueError, EOFError):
                continue
            yield from _unpacked(inner, depth + 1)
            break
        else:
            yield from _unpacked(raw, depth + 1)


def find_secrets(job: Any, secrets: Iterable[Any]) -> list[int]:
    """Indexes of the ``secrets`` whose value appears anywhere in ``job``.

    ``job`` is a ``beam.Pipeline`` (its runner API graph with display data and environments, and every
    pipeline option, job name and labels included), a protobuf message, bytes, text, or anything
    JSON can hold (a job description). Base64, zlib and bz2 blobs inside are unpacked, which is how
    Beam stores pickled functions. Values shorter than 6 characters are skipped.
    """
    values = [(i, str(reveal(s)).encode("utf-8")) for i, s in enumerate(secrets) if reveal(s) is not None]
    values = [(i, v) for i, v in values if len(v) >= _MIN_SECRET]
    if not values:
        return []
    if isinstance(job, beam.Pipeline):
        options = job.options.get_all_options(retain_unknown_options=True)
        blobs = [
            job.to_runner_api().SerializeToString(),
            json.dumps(options, default=str).encode("utf-8"),
            " ".join(map(str, getattr(job.options, "_flags", ()))).encode("utf-8"),
        ]
    elif isinstance(job, bytes):
        blobs = [job]
    elif isinstance(job, str):
        blobs = [job.encode("utf-8")]
    elif hasattr(job, "SerializeToString"):
        blobs = [job.SerializeToString()]
    else:
        blobs = [json.dumps(job, default=str).encode("utf-8")]
    found: set[int] = set()
    for blob in blobs:
        for part in _unpacked(blob):
            for i, value in values:
                if i not in found and value in part:
                    found.add(i)
    return sorted(found)


def check_no_secrets(pipeline: beam.Pipeline, secrets: Sequence[Any], runner: str) -> None:
    """Raise :class:`ConfigError` when a secret value is inside the job (see :func:`find_secrets`)."""
    if find_secrets(pipeline, secrets):
        raise ConfigError(
            f"a secret value is inside the {runner} job (a connector, step or sink keeps it, or a runner option "
            "holds it); the job was not submitted. Connectors must keep secrets as Secret objects and reveal "
            "them on the worker (in setup/connect), not copy them into plain attributes"
        )


# -- Dataflow dry runs -------------------------------------------------------------------------------------
def describe_dataflow_job(result: Any) -> dict[str, Any] | None:
    """The Dataflow job a ``--dry_run=True`` built, as the request would send it, or None.

    ``{"job": <the Job message with its environment, options and staged packages>, "pipeline": <the
    runner API graph>, "staged": [{"name": "workflow.tar.gz", "path": <local file>}, ...]}``.
    """
    job = getattr(result, "job", None)
    if job is None or not hasattr(job, "proto_pipeline"):
        return None
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.dataflow.internal import apiclient
    from google.protobuf import json_format

    staged = []
    for env in job.proto_pipeline.components.environments.values():
        for dep in env.dependencies:
            if dep.type_urn != common_urns.artifact_types.FILE.urn:
                continue
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
            name = os.path.basename(path)
            if dep.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
                name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name
            staged.append({"name": name, "path": path})
    staging = job.google_cloud_options.staging_location
    environment = apiclient.Environment(
        packages=[s["name"] for s in staged],
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=FileSystems.join(staging, "pipeline.pb"),
        proto_pipeline=job.proto_pipeline,
    )
    job.proto.environment = environment.proto
    return {
        "job": json_format.MessageToDict(job.proto._pb),
        "pipeline": json_format.MessageToDict(job.proto_pipeline),
        "staged": staged,
    }


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

