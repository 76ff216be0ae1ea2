"""The ``osmosis`` command: thin commands over the library; one place maps errors to exit codes.

Example::

    osmosis --home ./.osmosis run pipelines/tech_news.yaml
    osmosis history --json
    osmosis validate pipelines/*.yaml
    osmosis launch --dir pipelines/ --concurrency 4     # runs pipelines when due; SIGTERM stops it
    osmosis jobs --json

Exit codes: 0 ok; 1 a run, test or connector failed; 2 a config or usage error; 3 skipped because
another process holds the pipeline's lease; 70 an internal error (run with --debug for the traceback); 130
interrupted (Ctrl-C: the run is cancelled, nothing committed).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
from typing import Any, Callable, Sequence

from osmosis_beam import __version__
from osmosis_beam.config import RUNNERS

__all__ = ["main"]

log = logging.getLogger("osmosis_beam")
_SECRETS: list[Any] = []  # secrets of the specs loaded by this command, scrubbed from every error


class _DropNoise(logging.Filter):
    """Drops Beam's import-time warnings that say nothing to an osmosis user."""

    _NOISE = ("apitools not found", "Discarding unparseable args", "Discarding invalid overrides")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not any(msg.startswith(n) for n in self._NOISE)


def _setup_logging(verbosity: int, debug: bool, log_format: str = "text") -> None:
    import warnings

    from osmosis_beam.core.logs import JsonFormatter, RedactFilter

    # Deprecation notices of Beam's Google dependencies, printed when Beam is imported: nothing an osmosis
    # user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
    level = logging.DEBUG if debug else logging.INFO if verbosity else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)  # Python warnings (e.g. from Beam's dependencies) as JSON lines too
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_DropNoise())
    handler.addFilter(RedactFilter(lambda: _SECRETS))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if not debug else logging.DEBUG)
    logging.getLogger("osmosis_beam").setLevel(level)
    # Beam logs every stage at INFO, and a failing worker's traceback at ERROR, although the run's error says
    # what failed in one line: Beam's own logging shows with -v (warnings and errors) or --debug (everything).
    beam_level = logging.DEBUG if debug else logging.WARNING if verbosity else logging.CRITICAL + 10
    logging.getLogger("apache_beam").setLevel(beam_level)


def _report_error(args, text: str, event: str = "error") -> None:
    """The command's error on stderr: one line of text, or one JSON object under --log-format json."""
    from osmosis_beam.core.logs import JsonFormatter

    if getattr(args, "log_format", "text") != "json":
        print(text, file=sys.stderr)
        return
    record = logging.LogRecord("osmosis_beam.cli", logging.ERROR, __file__, 0, text, None, None)
    record.osmosis_event = event
    print(JsonFormatter().format(record), file=sys.stderr)


def _load(path: str, home: str | None = None):
    from osmosis_beam.config import load_pipeline

    spec = load_pipeline(path, home=home)
    _SECRETS.extend(spec.secret_values())
    return spec


def _store(args, read_only: bool = False):
    from osmosis_beam.state.factory import open_store

    _require_home(args)
    return open_store(home=args.home, url=args.state, read_only=read_only)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=None, default=str, ensure_ascii=False))


# -- commands ---------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from osmosis_beam.core.errors import OsmosisError
    from osmosis_beam.state.store import resolve_home
    from osmosis_beam.sync.runner import SyncRunner

    spec = _load(args.pipeline, args.home)
    store = _store(args)
    notifier = _run_notifier(args, spec)
    with _interruptible() as cancel:

        def on_done(run, error) -> None:
            # Under the lease, as the launcher does: the failure streak, and the pipeline's notify: alert.
            if not cancel.is_set():
                from osmosis_beam.scheduler.alerts import after_manual_run

                after_manual_run(store, spec, notifier, run, error)

        runner = SyncRunner(
            spec,
            store,
            home=resolve_home(args.home),
            runner=args.runner,
            beam_args=args.beam_args,
            full_refresh=args.full_refresh,
            cancel_event=cancel,
            progress=_progress_options(args),
            on_done=on_done,
        )
        try:
            try:
                run = runner.run()
            finally:
                if notifier is not None:
                    notifier.drain(ALERT_DRAIN)
        except OsmosisError:
            if cancel.is_set():
                raise KeyboardInterrupt from None
            raise
    if cancel.is_set():
        raise KeyboardInterrupt
    _print_json(run.summary())
    return 0


ALERT_DRAIN = 30.0  # seconds `osmosis run` waits at exit for its alert to be delivered


def _run_notifier(args, spec):
    """`osmosis run` alerts as the launcher does when the pipeline has a notify: section (--no-notify: never)."""
    if args.no_notify or spec.notify is None:
        return None
    from osmosis_beam.scheduler.alerts import Notifier

    return Notifier()


def _progress_options(args) -> dict[str, Any] | None:
    """Live progress of `run` and `launch`: a live line on a terminal (run only), else a log line every
    --progress-every; --quiet: none."""
    if args.quiet:
        return None
    interval = _duration("--progress-every", args.progress_every).total_seconds()
    if interval <= 0:
        raise _usage(f"--progress-every must be more than 0s, got {args.progress_every}")
    logging.getLogger("osmosis_beam.progress").setLevel(logging.INFO)
    live = None if args.log_format == "text" else False  # JSON logs: progress as log lines, never a live line
    return {"interval": interval, "live": live}


@contextlib.contextmanager
def _interruptible():
    """While inside, Ctrl-C (SIGINT) cancels the run cleanly (nothing committed) instead of tearing through Beam;
    a second Ctrl-C interrupts at once."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handle(signum, frame) -> None:  # noqa: ARG001
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_history(args) -> int:
    from osmosis_beam.state.commands import parse_since

    store = _store(args, read_only=True)
    since = parse_since(args.since) if args.since else None
    if args.limit is not None and args.limit < 1:
        raise _usage(f"--limit must be at least 1, got {args.limit}")
    runs = store.query_runs(args.pipeline, status=args.status, since=since, limit=args.limit)
    if args.json:
        _print_json([{**r.to_dict(), "duration_seconds": _seconds(r)} for r in runs])
        return 0
    if not runs:
        print("no runs" + (f" for pipeline {args.pipeline}" if args.pipeline else "") + (" matching the filters" if args.status or since else " yet"))
        return 0
    header = ("STARTED", "PIPELINE", "STATUS", "DURATION", "READ", "WRITTEN", "DEAD", "WINDOW HI", "ERROR / NOTE")
    rows = []
    for r in runs:
        window = r.window.to_dict() if r.window else {"hi": None}
        seconds = _seconds(r) if r.status != "state" else None
        rows.append((
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"), r.pipeline_id, r.status,
            "-" if seconds is None else _human_seconds(seconds), str(r.records_read),
            str(r.records_written), str(r.dead_letter), str(window["hi"] or "-"), r.error or r.note or "",
        ))
    # The last column is never cut: a long error is printed whole, its extra lines indented under it.
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header[:-1])]
    indent = " " * (sum(widths) + 2 * len(widths))
    for row in (header, *rows):
        first, *more = row[-1].splitlines() or [""]
        print("  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), first]).rstrip())
        for line in more:
            print(indent + line)
    return 0


def _seconds(run) -> float | None:
    if run.finished_at is None or run.started_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)


def _human_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def cmd_state(args) -> int:
    from osmosis_beam.state import commands

    store = _store(args, read_only=args.action == "show")
    if args.action == "show":
        info = commands.describe_state(store, args.id)
        if args.json:
            _print_json(info)
            return 0
        window = info["window"]
        print(f"pipeline      {info['pipeline']}")
        print(f"watermark     {info['watermark'] if info['watermark'] is not None else '- (none: the next run is a full read)'}")
        if info["updated_at"]:
            print(f"  updated     {info['updated_at']}")
        if info["freshness_seconds"] is not None:
            print(f"  freshness   {_human_seconds(info['freshness_seconds'])} behind now")
        if window:
            by = info["committed_by"]
            print(f"  window      [{window['lo'] if window['lo'] is not None else '-inf'}, {window['hi']})  "
                  f"({by['status']} {by['run_id']}{': ' + by['note'] if by['note'] else ''})")
        print(f"state         {json.dumps(info['state'], default=str, sort_keys=True)}")
        if info["pending"]:
            for p in info["pending"]:
                print(f"pending       run {p['run_id']} by {p['holder']} since {p['started_at']}: "
                      f"{json.dumps(p['state'], default=str, sort_keys=True) if p['state'] is not None else '(no state saved yet)'}")
        else:
            print("pending       - (no run in progress)")
        lease = info["lease"]
        if lease:
            print(f"lease         {lease['holder']} until {lease['expires_at']}{'' if lease['live'] else ' (expired or dead: free)'}")
        else:
            print("lease         - (free)")
        return 0
    if args.action == "set":
        if not args.hi:
            raise _usage("state set needs --hi TIME (e.g. --hi 2024-06-01T00:00:00Z)")
        current = store.get_watermark(args.id).value
        value = commands.parse_hi(args.hi, current)
        commands.describe_state(store, args.id)  # unknown pipelines fail before the question
        from osmosis_beam.core.window import format_bound

        old = format_bound(current) if current is not None else "none"
        direction = "rewinds" if current is not None and value < current else "advances" if current is not None else "sets"
        question = f"pipeline {args.id}: watermark {old} -> {format_bound(value)} ({direction} it)"
        if not _confirm(question, args.yes):
            print("not changed", file=sys.stderr)
            return 1
        record = commands.set_watermark(store, args.id, value)
    else:
        info = commands.describe_state(store, args.id)
        question = f"pipeline {args.id}: clear the watermark ({info['watermark'] or 'none'}) and connector state; the next run reads from incremental.start"
        if not _confirm(question, args.yes):
            print("not changed", file=sys.stderr)
            return 1
        record = commands.clear_state(store, args.id)
    print(f"pipeline {args.id}: {record.note} (history {record.run_id})")
    return 0


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        print(question, file=sys.stderr)
        return True
    if not sys.stdin or not sys.stdin.isatty():
        raise _usage(f"{question}: confirm with --yes (no terminal to ask on)")
    try:
        answer = input(f"{question}. Proceed? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_validate(args) -> int:
    results = [_validate_one(path, args.offline, args.home) for path in args.pipelines]
    if args.json:
        _print_json(results)
        return 2 if any(not r["valid"] for r in results) else 0
    for r in results:
        if not r["valid"]:
            print(f"{r['path']}: invalid", file=sys.stderr)
            for problem in r["problems"]:
                print(f"  {problem}", file=sys.stderr)
        elif r["pipeline"] is None:
            print(f"{r['path']}: structure ok (offline)")
        else:
            print(f"{r['path']}: ok (pipeline {r['pipeline']}: {r['source']} -> {r['steps']} steps -> {r['sink']})")
        for item in r["unchecked"]:
            print(f"  not checked: {item['path']} (${{{item['variable']}}} is not set)")
    return 2 if any(not r["valid"] for r in results) else 0


_UNSET = re.compile(r"^(?P<path>.*?): environment variable (?P<variable>\w+) is not set")


def _validate_one(path: str, offline: bool, home: str | None = None) -> dict[str, Any]:
    """One file's verdict; ``offline``: unset ${ENV} variables are listed as not checked, not as problems."""
    from osmosis_beam.core.errors import ConfigError

    result: dict[str, Any] = {"path": path, "valid": True, "pipeline": None, "source": None, "steps": None,
                              "sink": None, "problems": [], "unchecked": []}
    try:
        spec = _load(path, home)
    except ConfigError as exc:
        problems = list(exc.problems or [exc.message])
        if offline:
            unset = [m for m in map(_UNSET.match, problems) if m]
            result["unchecked"] = [{"path": m["path"], "variable": m["variable"]} for m in unset]
            problems = [p for p in problems if not _UNSET.match(p)]
        result["problems"] = problems
        result["valid"] = not problems
        return result
    result.update(pipeline=spec.id, source=spec.source.type, steps=len(spec.steps), sink=spec.sink.type)
    return result


def cmd_test(args) -> int:
    spec = _load(args.pipeline)
    connector = spec.build_connector()
    try:
        message = connector.test_connection()
    finally:
        connector.disconnect()
    print(message)
    return 0


def cmd_schema(args) -> int:
    spec = _load(args.pipeline)
    connector = spec.build_connector()
    try:
        connector.connect()
        schema = connector.get_schema()
    finally:
        connector.disconnect()
    print(json.dumps(schema, indent=2, default=str, ensure_ascii=False))
    return 0


def cmd_connectors(args) -> int:
    from osmosis_beam.registry import default_registry

    described = default_registry().describe()
    if args.json:
        _print_json(described)
        return 0
    for kind, rows in described.items():
        print(f"{kind}:")
        for row in rows:
            print(f"  {row['name']:<12} {row['description']}")
    return 0


def cmd_sources(args) -> int:
    from osmosis_beam.state.sources import DataSourceManager

    manager = DataSourceManager(_store(args, read_only=args.action != "remove"))
    if args.action == "list":
        sources = manager.list()
        if args.json:
            _print_json([{"id": s.id, "type": s.type, "pipeline": s.pipeline_path, "config": s.config} for s in sources])
        elif not sources:
            print("no sources yet (a source is saved when its pipeline first runs)")
        else:
            for s in sources:
                print(f"{s.id:<24} {s.type:<10} {s.pipeline_path or ''}")
        return 0
    if not args.id:
        raise _usage(f"sources {args.action} needs a source id")
    if args.action == "show":
        s = manager.get(args.id)
        print(json.dumps({"id": s.id, "type": s.type, "pipeline": s.pipeline_path, "config": s.config,
                          "created_at": s.created_at.isoformat(), "updated_at": s.updated_at.isoformat()},
                         indent=2, default=str))
        return 0
    manager.remove(args.id)
    print(f"removed source {args.id}")
    return 0


def _pipeline_spec(args, pipeline: str):
    """A pipeline by id (its YAML from the sync job the state store keeps) or by its YAML file."""
    import os

    if pipeline.endswith((".yaml", ".yml")) and os.path.isfile(pipeline):
        return _load(pipeline, args.home)
    job = _store(args, read_only=True).get_job(pipeline)
    if job is None or not job.spec_path:
        raise _usage(f"unknown pipeline {pipeline!r}: it has not run from this home yet; give its PIPELINE.yaml instead")
    return _load(job.spec_path, args.home)


def cmd_dead_letters(args) -> int:
    from osmosis_beam.io.files.dead_letters import dead_letter_root, find_folders
    from osmosis_beam.state.store import resolve_home

    home = resolve_home(args.home)
    spec = _pipeline_spec(args, args.id)
    if args.action == "replay":
        from osmosis_beam.sync.runner import SyncRunner

        run = SyncRunner(spec, _store(args), home=home).replay(args.run)
        if run is None:
            print(f"pipeline {spec.id}: no dead letters to replay (every kept one was replayed)", file=sys.stderr)
            return 0
        _print_json(run.summary())
        return 0
    root = dead_letter_root(spec, home)
    folders = find_folders(root, args.run)
    rows = []
    for folder in folders:
        claim = folder.claim() or {}
        status = f"replayed by {claim['run_id']}" if claim.get("status") == "done" else (
            f"replay {claim['run_id']} pending" if claim else "kept")
        rows.append({"run_id": folder.run_id, "window_hi": folder.window_hi, "count": folder.count, "status": status,
                     "path": str(folder.path),
                     "reasons": [{"step": st, "error": er, "count": n} for st, er, n in folder.reasons()]})
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"pipeline {spec.id}: no dead letters under {root}")
        return 0
    header = ("RUN", "WINDOW HI", "DEAD", "STATUS")
    cells = [(r["run_id"], str(r["window_hi"] or "-"), str(r["count"]), r["status"]) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(widths[i]) for i, h in enumerate(header)).rstrip())
    for row, cell in zip(rows, cells):
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(cell)).rstrip())
        for reason in row["reasons"]:
            print(f"    {reason['count']:>6} x {reason['step']}: {reason['error']}")
    kept = sum(r["count"] for r in rows if r["status"] == "kept")
    if kept:
        print(f"{kept} kept; once the cause is fixed: osmosis dead-letters replay {spec.id}")
    return 0


def cmd_launch(args) -> int:
    from osmosis_beam.scheduler.launcher import SyncScheduler, load_specs
    from osmosis_beam.state.store import resolve_home

    timing = {name: _duration(f"--{name.replace('_', '-')}", getattr(args, name)) for name in ("grace", "backoff", "max_backoff")}
    specs = load_specs(args.pipelines, args.dir)
    for spec in specs:
        _SECRETS.extend(spec.secret_values())
    # The launcher's start/end lines are its output: show them without -v.
    logging.getLogger("osmosis_beam.scheduler").setLevel(logging.DEBUG if args.debug else logging.INFO)
    store = _store(args)
    metrics = server = None
    if args.metrics_port is not None:
        from osmosis_beam.scheduler.metrics import LauncherMetrics

        metrics = LauncherMetrics(store, [s.id for s in specs if s.schedule is not None])
        server = metrics.serve(args.metrics_port, args.metrics_host)
    scheduler = SyncScheduler(
        specs, store, home=resolve_home(args.home), concurrency=args.concurrency, runner=args.runner,
        metrics=metrics, notifier=_launch_notifier(args), progress=_progress_options(args), **timing
    )
    try:
        with scheduler.stop_on_signals():
            result = scheduler.run(once=args.once, max_runs=args.max_runs)
    finally:
        if server is not None:
            server.shutdown()
    # A stop by signal exits 0 (runs it cancelled are in the history as failed); --once / --max-runs
    # exit 1 when one of their runs failed.
    code = 0 if result.stopped else result.exit_code
    if result.stopped and scheduler.stopped_by == signal.SIGINT:
        code = 130  # Ctrl-C: the shell's convention; a SIGTERM stop is an orderly exit (0)
        print(f"interrupted: {result.cancelled} runs cancelled without committing", file=sys.stderr)
    if result.unfinished:
        # Aborted runs still inside Beam would hold the exit (the interpreter joins Beam's worker threads):
        # leave now. Their history rows stay 'running' under this dead process, and the next start repairs them.
        print(f"aborted: {result.unfinished} runs left unfinished for the next start to repair", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


def _launch_notifier(args):
    """The launcher's alerts: each pipeline's ``notify:``, else ``--notify URL`` / $OSMOSIS_NOTIFY_URL."""
    import os

    from osmosis_beam.core.notify import parse_notify
    from osmosis_beam.scheduler.alerts import Notifier

    url = args.notify or os.environ.get("OSMOSIS_NOTIFY_URL") or None
    problems: list[str] = []
    default = parse_notify({"webhook": url, "on": args.notify_on.split(",")}, problems, "--notify") if url else None
    if problems:
        raise _usage("; ".join(problems))
    if default is not None:
        _SECRETS.append(url)
    return Notifier(default=default)


def cmd_jobs(args) -> int:
    from osmosis_beam.scheduler.launcher import describe_jobs

    jobs = describe_jobs(_store(args, read_only=True))
    if args.json:
        _print_json(jobs)
        return 0
    if not jobs:
        print("no sync jobs yet (a job is saved when the launcher or `osmosis run` first sees a pipeline)")
        return 0
    header = ("PIPELINE", "SCHEDULE", "LAST RUN", "NEXT RUN", "STATUS", "FAILURES")
    rows = []
    for j in jobs:
        schedule = j["schedule"] or {}
        text = f"cron {schedule['cron']} {schedule['timezone']}" if "cron" in schedule else (
            f"every {schedule['every']}" if "every" in schedule else "-")
        rows.append((j["pipeline"], text, j["last_run"] or "-", j["next_run"] or "-", j["status"], str(j["consecutive_failures"])))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0


def cmd_ui(args) -> int:
    from osmosis_beam.state.store import resolve_home
    from osmosis_beam.ui import serve

    store = _store(args)
    home = resolve_home(args.home) if args.home or not args.state else store.default_home()
    serve(store, home, host=args.host, port=args.port, token=args.token)
    return 0


# -- spec, init, and where global flags go ------------------------------------------------------------
def cmd_spec(args) -> int:
    from osmosis_beam.schema import pipeline_schema, standalone_type_schema

    schema = standalone_type_schema(args.type, args.kind) if args.type else pipeline_schema()
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


def cmd_init(args) -> int:
    from osmosis_beam.state.store import resolve_home

    store = _store(args)  # creates the SQLite state (or checks the --state server) and its schema
    where = getattr(store, "location", None) or str(resolve_home(args.home))
    store.close()
    print(f"osmosis home ready: {resolve_home(args.home)} (state: {where})")
    return 0


_CREATES_HOME = ("run", "launch", "init")


def _require_home(args) -> None:
    """Commands that only look (history, jobs, state, sources, ui) never create a home: a typo must not
    silently become a new, empty one. ``init``, ``run`` and ``launch`` create it."""
    import os

    from osmosis_beam.state.store import resolve_home

    if args.command in _CREATES_HOME or args.state or os.environ.get("OSMOSIS_STATE_URL"):
        return
    home = resolve_home(args.home)
    if not home.is_dir():
        given = "--home" if args.home else "$OSMOSIS_HOME" if os.environ.get("OSMOSIS_HOME") else "the default home"
        raise _usage(
            f"no osmosis home at {home} ({given}): the folder does not exist. Check the path; "
            f"`osmosis --home {home} init` creates it (run and launch create it too)"
        )


_RUN_USAGE = "osmosis [GLOBAL FLAGS] run PIPELINE.yaml [--runner NAME] [--full-refresh] [--quiet] [--progress-every D] [--no-notify] [-- BEAM_ARGS...]"
_RUN_EPILOG = """\
global flags (before or after the command):
  --home DIR, --state URL, --debug, -v, --log-format text|json

-- BEAM_ARGS...
  everything after a lone -- goes to Beam as pipeline options, e.g.
  osmosis run orders.yaml --runner portable -- --job_endpoint=localhost:8099 --environment_type=LOOPBACK

output: the LAST line of stdout is the run's JSON summary; progress and errors go to stderr
"""
_GLOBAL_FLAGS = (
    (("--home",), {"metavar": "DIR"}),
    (("--state",), {"metavar": "URL"}),
    (("--debug",), {"action": "store_true"}),
    (("-v", "--verbose"), {"action": "count"}),
    (("-q", "--quiet"), {"action": "store_true"}),
    (("--log-format",), {"choices": ["text", "json"]}),
)


def _accept_global_flags_anywhere(parser: argparse.ArgumentParser, sub) -> None:
    """``osmosis history --home DIR`` works like ``osmosis --home DIR history``: every command also takes
    the global flags (hidden from its help; a value given after the command wins)."""
    for command in sub.choices.values():
        taken = {o for action in command._actions for o in action.option_strings}
        for flags, options in _GLOBAL_FLAGS:
            flags = tuple(f for f in flags if f not in taken)
            if flags:
                command.add_argument(*flags, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **options)


def _duration(flag: str, text: str):
    from osmosis_beam.core.timefmt import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _usage(f"{flag}: {exc}") from None


def _usage(message: str):
    from osmosis_beam.core.errors import ConfigError

    return ConfigError(message)


# -- parsing -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osmosis", description="Incremental data ingestion on Apache Beam.")
    parser.add_argument("--version", action="version", version=f"osmosis-beam {__version__}")
    parser.add_argument("--home", help="state folder (default: $OSMOSIS_HOME, else ./.osmosis)")
    parser.add_argument("--state", help="state store URL, e.g. postgresql://... (default: $OSMOSIS_STATE_URL, else SQLite in the home)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log run progress to stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress output")
    parser.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="stderr logs as text (default) or one JSON object a line (time, level, pipeline, run_id, event, message)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run one sync of a pipeline", usage=_RUN_USAGE, epilog=_RUN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", metavar="PIPELINE.yaml")
    p.add_argument("--runner", choices=RUNNERS, help="override the YAML's runner")
    p.add_argument("--full-refresh", action="store_true", help="ignore the watermark and read from incremental.start")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no live progress on stderr (the JSON summary is still the last line of stdout)")
    p.add_argument("--progress-every", default="5s", metavar="DURATION",
                   help="when stderr is not a terminal, a progress line this often (default 5s)")
    p.add_argument("--no-notify", action="store_true",
                   help="send no alert for this run, even when the pipeline has a notify: section")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("history", help="sync history, newest first")
    p.add_argument("--pipeline", metavar="ID")
    p.add_argument("--status", choices=["running", "succeeded", "failed", "state"], help="only runs with this status (state: manual state changes)")
    p.add_argument("--since", metavar="WHEN", help="only runs started since: a duration back (2h, 7d) or a time (2024-06-01T00:00:00Z)")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (default 20)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("state", help="a pipeline's watermark: show it, set it (rewind/advance) or clear it")
    p.add_argument("action", choices=["show", "set", "clear"])
    p.add_argument("id", metavar="ID", help="the pipeline id")
    p.add_argument("--hi", metavar="TIME", help="set: the new watermark (ISO-8601 with offset, or an integer cursor)")
    p.add_argument("--yes", "-y", action="store_true", help="set/clear: do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="show: as JSON")
    p.set_defaults(func=cmd_state)

    p = sub.add_parser("validate", help="check pipeline files; list every error")
    p.add_argument("pipelines", nargs="+", metavar="PIPELINE.yaml")
    p.add_argument("--offline", action="store_true",
                   help="check the structure even where ${ENV} variables are unset (those values are not checked)")
    p.add_argument("--json", action="store_true", help="one JSON array on stdout: per file, valid, problems, unchecked")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("test", help="test the source connection")
    p.add_argument("pipeline", metavar="PIPELINE.yaml")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("schema", help="print the source's schema as JSON")
    p.add_argument("pipeline", metavar="PIPELINE.yaml")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("connectors", help="list the registered connector, step and sink types")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_connectors)

    p = sub.add_parser("sources", help="persisted sources (secrets redacted)")
    p.add_argument("action", choices=["list", "show", "remove"])
    p.add_argument("id", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser("dead-letters", help="a pipeline's kept dead letters: list them, replay them once fixed")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("id", metavar="ID", help="the pipeline id (or its PIPELINE.yaml)")
    p.add_argument("--run", metavar="RUN", help="only the dead letters of this run")
    p.add_argument("--json", action="store_true", help="list: as JSON")
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser("launch", help="run pipelines when their schedule says they are due")
    p.add_argument("pipelines", nargs="*", metavar="PIPELINE.yaml")
    p.add_argument("--dir", metavar="DIR", help="also every *.yaml / *.yml pipeline in DIR")
    p.add_argument("--once", action="store_true", help="run every pipeline that is due now, then exit")
    p.add_argument("--max-runs", type=int, metavar="N", help="exit after N runs")
    p.add_argument("--concurrency", type=int, default=1, metavar="K", help="pipelines running at once (default 1)")
    p.add_argument("--grace", default="30s", metavar="DURATION",
                   help="on SIGTERM/SIGINT, how long running runs may finish before they are aborted (default 30s)")
    p.add_argument("--backoff", default="30s", metavar="DURATION",
                   help="wait after a pipeline's first failure; doubles per failure in a row (default 30s)")
    p.add_argument("--max-backoff", default="1h", metavar="DURATION", help="cap of the failure backoff (default 1h)")
    p.add_argument("--runner", choices=RUNNERS, help="override the YAMLs' runner")
    p.add_argument("--metrics-port", type=int, metavar="P", help="serve Prometheus metrics on http://HOST:P/metrics")
    p.add_argument("--progress-every", default="60s", metavar="DURATION",
                   help="a progress line per running run this often (default 60s; --quiet: none)")
    p.add_argument("--notify", metavar="URL",
                   help="alert webhook for pipelines without a notify: section (default: $OSMOSIS_NOTIFY_URL)")
    p.add_argument("--notify-on", default="failure,recovery", metavar="EVENTS",
                   help="what --notify alerts on: failure, recovery, success, every_run (default failure,recovery)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address of the metrics endpoint (default 127.0.0.1; 0.0.0.0 for a remote Prometheus)")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("ui", help="the dashboard: a local web app over the state store (needs osmosis-beam[ui])")
    p.add_argument("--port", type=int, default=8321, metavar="P", help="port (default 8321)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--token", help="access token, required beyond loopback (default: $OSMOSIS_UI_TOKEN)")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("jobs", help="the sync jobs: pipeline, schedule, last run, next run, status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("spec", help="JSON Schema of pipeline files (or of one connector, step or sink type), for editors")
    p.add_argument("type", nargs="?", metavar="TYPE", help="a connector, step or sink type (default: the whole pipeline file)")
    p.add_argument("--kind", choices=["connector", "step", "sink"], help="which kind TYPE is, when a name is several (postgres)")
    p.set_defaults(func=cmd_spec)

    p = sub.add_parser("init", help="create the home (state folder) that other commands then use")
    p.set_defaults(func=cmd_init)
    _accept_global_flags_anywhere(parser, sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, beam_args = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.beam_args = beam_args
    if beam_args and args.command != "run":
        parser.error("arguments after -- (Beam arguments) are only for 'run'")
    _setup_logging(args.verbose, args.debug, args.log_format)
    return _invoke(args.func, args)


def _invoke(func: Callable, args) -> int:
    from osmosis_beam.core.errors import OsmosisError
    from osmosis_beam.core.secrets import redact_text

    try:
        return func(args)
    except OsmosisError as exc:  # ConfigError included: a message and its exit code
        _debug_traceback(args)
        _report_error(args, f"error: {redact_text(exc.message, _SECRETS)}")
        return exc.exit_code
    except KeyboardInterrupt:
        _report_error(args, "interrupted: nothing was committed; run it again to complete the window", event="interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into a message
        _debug_traceback(args)
        text = redact_text(f"{type(exc).__name__}: {exc}", _SECRETS)
        _report_error(args, f"internal error: {text}\n(run with --debug for the traceback, and please report it)",
                      event="internal_error")
        return 70


def _debug_traceback(args) -> None:
    """Under --debug, the traceback on stderr, redacted like every other output (never Python's raw one)."""
    if not args.debug:
        return
    import traceback

    from osmosis_beam.core.secrets import redact_text

    text = redact_text(traceback.format_exc().rstrip(), _SECRETS)
    _report_error(args, text, event="traceback")


def entry() -> None:
    """The ``osmosis`` command (and ``python -m osmosis_beam.cli``): :func:`main`, then :func:`exit_now`."""
    exit_now(main())


def exit_now(code: int) -> None:
    """End the process with ``code`` without the interpreter's teardown of every module.

    After a Beam job that teardown (about 900 modules, Beam's protos, grpc's and pyarrow's extension types)
    took 0.3-0.6 s of the process's 1.5-2 s on this machine, with nothing left for it to do. Whatever the exit
    must still do is done first: the ``atexit`` handlers run (logging's flush and close, temporary files
    and folders left to ``weakref.finalize``, pymongo's and multiprocessing's clean-ups), then stdout and
    stderr are flushed. While a thread other than the main one still runs and is not a daemon, the exit
    is the normal one, which waits for it.
    """
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":  # pragma: no cover
    entry()
