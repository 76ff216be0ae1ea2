"""The ``osmosis`` command: thin commands over the library; one place maps errors to exit codes.

Example::

    osmosis --home ./.osmosis run pipelines/tech_news.yaml
    osmosis history --json
    osmosis validate pipelines/*.yaml
    osmosis launch --dir pipelines/ --concurrency 4     # runs pipelines when due; SIGTERM stops it
    osmosis jobs --json

Exit codes: 0 ok; 1 a run, test or connector failed; 2 a config or usage error; 3 skipped because
another process holds the pipeline's lease; 70 an internal error (run with --debug for the traceback).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
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


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            from osmosis_beam.core.secrets import redact_text

            record.msg = redact_text(record.getMessage(), _SECRETS)
            record.args = ()
        return True


def _setup_logging(verbosity: int, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbosity else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_DropNoise())
    handler.addFilter(_Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if not debug else logging.DEBUG)
    logging.getLogger("osmosis_beam").setLevel(level)
    # Beam logs every stage at INFO; keep it quiet unless --debug.
    logging.getLogger("apache_beam").setLevel(logging.DEBUG if debug else logging.ERROR)


def _load(path: str):
    from osmosis_beam.config import load_pipeline

    spec = load_pipeline(path)
    _SECRETS.extend(spec.secret_values())
    return spec


def _store(args):
    from osmosis_beam.state.factory import open_store

    return open_store(home=args.home, url=args.state)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=None, default=str, ensure_ascii=False))


# -- commands ---------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from osmosis_beam.state.store import resolve_home
    from osmosis_beam.sync.runner import SyncRunner

    spec = _load(args.pipeline)
    store = _store(args)
    runner = SyncRunner(
        spec,
        store,
        home=resolve_home(args.home),
        runner=args.runner,
        beam_args=args.beam_args,
        full_refresh=args.full_refresh,
    )
    run = runner.run()
    _print_json(run.summary())
    return 0


def cmd_history(args) -> int:
    from osmosis_beam.state.commands import parse_since

    store = _store(args)
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

    store = _store(args)
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
    from osmosis_beam.core.errors import ConfigError

    failed = 0
    for path in args.pipelines:
        try:
            spec = _load(path)
        except ConfigError as exc:
            failed += 1
            print(f"{path}: invalid", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            continue
        print(f"{path}: ok (pipeline {spec.id}: {spec.source.type} -> {len(spec.steps)} steps -> {spec.sink.type})")
    return 2 if failed else 0


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

    manager = DataSourceManager(_store(args))
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
        metrics=metrics, **timing
    )
    try:
        with scheduler.stop_on_signals():
            result = scheduler.run(once=args.once, max_runs=args.max_runs)
    finally:
        if server is not None:
            server.shutdown()
    # A stop by signal exits 0 (runs it cancelled are in the history as failed); --once / --max-runs
    # exit 1 when one of their runs failed.
    return 0 if result.stopped else result.exit_code


def cmd_jobs(args) -> int:
    from osmosis_beam.scheduler.launcher import describe_jobs

    jobs = describe_jobs(_store(args))
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run one sync of a pipeline")
    p.add_argument("pipeline", metavar="PIPELINE.yaml")
    p.add_argument("--runner", choices=RUNNERS, help="override the YAML's runner")
    p.add_argument("--full-refresh", action="store_true", help="ignore the watermark and read from incremental.start")
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
    _setup_logging(args.verbose, args.debug)
    return _invoke(args.func, args)


def _invoke(func: Callable, args) -> int:
    from osmosis_beam.core.errors import ConfigError, OsmosisError
    from osmosis_beam.core.secrets import redact_text

    try:
        return func(args)
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"error: {redact_text(exc.message, _SECRETS)}", file=sys.stderr)
        return exc.exit_code
    except OsmosisError as exc:
        if args.debug:
            raise
        print(f"error: {redact_text(exc.message, _SECRETS)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into a message
        if args.debug:
            raise
        text = redact_text(f"{type(exc).__name__}: {exc}", _SECRETS)
        print(f"internal error: {text}\n(run with --debug for the traceback, and please report it)", file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
