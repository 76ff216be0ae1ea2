"""Pipeline YAML: loading, ``${ENV}`` interpolation and validation (every error at once).

Example::

    from osmosis_beam.config import load_pipeline
    spec = load_pipeline("pipelines/tech_news.yaml")
    spec.id, spec.source.type, spec.sink.options["path"]

A file with mistakes raises one :class:`~osmosis_beam.core.errors.ConfigError` whose
``problems`` name each path: ``source.url: required``,
``schedule.cron: invalid cron expression '61 * * * *'``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import zoneinfo
from pathlib import Path
from typing import Any, Mapping

import yaml

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.notify import NotifySpec, parse_notify
from osmosis_beam.core.options import (
    Option,
    add_check_problems,
    suggest,
    validate_options,
)
from osmosis_beam.core.secrets import Secret, is_secret_header, url_secrets
from osmosis_beam.core.timefmt import format_duration, parse_duration
from osmosis_beam.core.window import IncrementalSpec

__all__ = [
    "PipelineSpec",
    "SourceSpec",
    "SinkSpec",
    "StepSpec",
    "ScheduleSpec",
    "RunnerSpec",
    "ReadSpec",
    "load_pipeline",
    "parse_pipeline",
    "interpolate_env",
    "load_yaml",
    "MAX_YAML_ALIASES",
    "MAX_YAML_NODES",
]

PIPELINE_ID = re.compile(r"^[a-z0-9_-]+$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(
    value: Any, path: str, problems: list[str], env: Mapping[str, str] | None = None, refs: dict[str, str] | None = None
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``value``.

    A reference to an unset variable without a default is a problem at ``path``. With ``refs``, each
    string whose ``${VAR}`` s are all set is recorded as ``refs[path] = text`` (defaults dropped), so a
    secret can travel to remote workers as that text and be resolved there.
    """
    env = os.environ if env is None else env
    if isinstance(value, str):
        if refs is not None and _ENV_REF.search(value) and all(m.group(1) in env for m in _ENV_REF.finditer(value)):
            refs[path.lstrip(".")] = _ENV_REF.sub(lambda m: "${%s}" % m.group(1), value)  # defaults dropped

        def repl(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set (export it, or write ${{{name}:-default}})")
            return ""

        if _ENV_REF.fullmatch(value):
            name, default = _ENV_REF.fullmatch(value).groups()
            if name in env or default is not None:
                return _typed_env(repl(_ENV_REF.fullmatch(value)))
        return _ENV_REF.sub(repl, value)
    if isinstance(value, list):
        # Numbered from 1, like steps (``steps[1] (filter): ...``), so one step has one path.
        return [interpolate_env(v, f"{path}[{i}]", problems, env, refs) for i, v in enumerate(value, start=1)]
    if isinstance(value, dict):
        return {k: interpolate_env(v, f"{path}.{k}", problems, env, refs) for k, v in value.items()}
    return value


_ENV_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_ENV_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")


def _typed_env(text: str) -> Any:
    """A whole-value ``${VAR}`` holding a plain number becomes that number (``${PORT}`` -> 5432).

    Only text that the number prints back exactly is converted, so a string option never changes:
    YAML 1.1 would read ``0123`` as octal 83, ``12:30`` as 750 and ``yes`` as True.
    """
    if _ENV_INT.fullmatch(text):
        return int(text)
    if _ENV_FLOAT.fullmatch(text) and repr(float(text)) == text:
        return float(text)
    return text


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    type: str
    options: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SinkSpec:
    type: str
    options: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class StepSpec:
    index: int
    name: str
    config: Any
    on_error: str = "dead_letter"

    @property
    def label(self) -> str:
        return f"{self.index}: {self.name}"


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    every: dt.timedelta | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def to_dict(self) -> dict[str, Any]:
        from osmosis_beam.core.timefmt import format_duration

        if self.cron:
            return {"cron": self.cron, "timezone": self.timezone}
        return {"every": format_duration(self.every)} if self.every else {}


@dataclasses.dataclass(frozen=True)
class RunnerSpec:
    name: str = "direct"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ReadSpec:
    splits: int = 4
    batch_size: int = 2000
    path: str = "auto"  # auto: zero-decode when no step needs Python values; typed: always decode


@dataclasses.dataclass(frozen=True)
class DeadLetterSpec:
    """Where dead letters go and how many a window may have before its run fails (the budget).

    A window's records are those read plus those the read itself could not decode (a read's dead
    letters are not counted as read): ``max(read, written + dead)``. It is over budget when its dead
    letters exceed ``max_count`` (when set), or exceed ``max_ratio`` of its records, or when it is not
    empty and nothing but dead letters came out of it (unless ``max_ratio`` is 1).
    """

    path: str | None = None
    max_count: int | None = None
    max_ratio: float = 0.1

    def over_budget(self, dead: int, read: int, written: int) -> str | None:
        """Why ``dead`` dead letters (with ``read`` records read, ``written`` written) break the budget, or None."""
        if dead <= 0:
            return None
        if self.max_count is not None and dead > self.max_count:
            return f"{dead:,} dead letters, more than dead_letter.max_count {self.max_count:,}"
        total = max(read, written + dead)
        if self.max_ratio < 1 and written == 0:
            return f"all {total:,} records of the window are dead letters"
        if dead > self.max_ratio * total:
            return (f"{dead:,} dead letters out of {total:,} records ({dead / total:.1%}), "
                    f"more than dead_letter.max_ratio {self.max_ratio:g} ({self.max_ratio:.0%})")
        return None


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline. ``raw`` is the YAML as written (``${ENV}`` references unresolved)."""

    id: str
    source: SourceSpec
    sink: SinkSpec
    incremental: IncrementalSpec = IncrementalSpec()
    steps: tuple[StepSpec, ...] = ()
    schedule: ScheduleSpec | None = None
    runner: RunnerSpec = RunnerSpec()
    read: ReadSpec = ReadSpec()
    dead_letter: DeadLetterSpec = DeadLetterSpec()
    notify: NotifySpec | None = None
    path: str | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def dead_letter_path(self) -> str | None:
        """The configured dead-letter folder (None: ``HOME/dead_letter/<id>/``)."""
        return self.dead_letter.path

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent if self.path else Path.cwd()

    def secret_values(self) -> list[Any]:
        """Every secret this spec holds, for scrubbing error text."""
        found: list[Any] = []

        def walk(value: Any, header: str | None = None) -> None:
            if isinstance(value, Secret):
                found.append(value.reveal())
            elif isinstance(value, str):
                # secrets by rule in plain options: URL passwords and secret query values (?api_key=),
                # and the values of secret headers (headers: {X-Api-Key: ...})
                if header is not None and is_secret_header(header) and len(value) >= 3:
                    found.append(value)
                found.extend(url_secrets(value))
            elif isinstance(value, Mapping):
                for k, v in value.items():
                    walk(v, str(k) if header is not None else None)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v)

        def walk_options(options: Mapping[str, Any]) -> None:
            for k, v in options.items():
                if k == "headers" and isinstance(v, Mapping):
                    walk(v, "")
                else:
                    walk(v)

        walk_options(self.source.options)
        walk_options(self.sink.options)
        if self.notify is not None:
            walk(self.notify.webhook)
        return found

    # Built lazily so that importing config does not import every connector.
    def build_connector(self, registry=None):
        from osmosis_beam.registry import default_registry

        cls = (registry or default_registry()).connector(self.source.type)
        return cls(self.source.options, incremental=self.incremental, pipeline_id=self.id)

    def build_sink(self, registry=None):
        from osmosis_beam.registry import default_registry

        cls = (registry or default_registry()).sink(self.sink.type)
        return cls(self.sink.options, pipeline_id=self.id)


#: The runner names (osmosis_beam.runners.options builds their options; this module must not import Beam).
RUNNERS = ("direct", "portable", "flink", "spark", "prism", "dataflow")
_TOP_KEYS = ("id", "source", "incremental", "steps", "sink", "schedule", "runner", "read", "dead_letter", "notify", "description")
_INCREMENTAL = (
    Option("cursor_field"),
    Option("start", "timestamp"),
    Option("lookback", "duration", default=dt.timedelta(0)),
    Option("safety_lag", "duration"),
    Option("max_window", "duration"),
)
_READ = (
    Option("splits", "int", default=4, minimum=1),
    Option("batch_size", "int", default=2000, minimum=1),
    Option("path", "str", default="auto", choices=("auto", "typed"),
           help="auto: move pre-encoded data when no step needs Python values (zero-decode); typed: always decode"),
)
_SCHEDULE_KEYS = ("every", "interval_minutes", "cron", "timezone")


def load_pipeline(
    path: str | os.PathLike, *, registry=None, env: Mapping[str, str] | None = None, home: str | os.PathLike | None = None
) -> PipelineSpec:
    """Read, interpolate and validate one pipeline YAML file.

    ``home`` is the osmosis home the pipeline will run with (default ``$OSMOSIS_HOME``, else ``./.osmosis``):
    a file sink may not write into a folder that is, or contains, it.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such pipeline file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({exc})") from None
    data = load_yaml(text, str(p))
    return parse_pipeline(data, path=str(p.resolve()), registry=registry, env=env, home=home)


# YAML anchors and aliases (``&defaults`` / ``*defaults``, ``<<: *defaults``) are welcome in pipeline
# files, but a file whose aliases nest ("billion laughs": nine levels of nine aliases each) expands
# into ~10^9 values when anything walks it. The composed document is a graph in which every alias is
# the anchored node itself, so its expanded size can be counted without expanding it.
MAX_YAML_ALIASES = 100  # alias uses in one file
MAX_YAML_NODES = 100_000  # values in the document with every alias expanded


def load_yaml(text: str, where: str) -> Any:
    """Parse one YAML document safely, refusing alias bombs; ConfigError names ``where`` and the fix.

    A file may use at most :data:`MAX_YAML_ALIASES` aliases, and expand (every alias replaced by what
    it refers to) to at most :data:`MAX_YAML_NODES` values. Aliases that refer to themselves are refused.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML{at}: {problem}", source=where) from None
    finally:
        loader.dispose()


def _check_aliases(root: yaml.Node, where: str) -> None:
    """Count alias uses and the expanded size of the composed document without expanding it."""
    sizes: dict[int, int] = {}  # id(node) -> expanded size of its subtree
    uses = 0
    seen: set[int] = set()  # every node reached once (a second visit is an alias use)
    # Iterative post-order walk: an alias bomb nests deep, and recursion would only move the problem.
    stack: list[tuple[yaml.Node, bool, tuple[int, ...]]] = [(root, False, ())]
    while stack:
        node, done, path = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_NODES:
                raise ConfigError(
                    f"{where}: the YAML expands to more than {MAX_YAML_NODES:,} values through its aliases "
                    f"(*name references, line {node.start_mark.line + 1}); an alias bomb? Write the values out, "
                    "or use fewer nested aliases", source=where,
                )
            continue
        if key in path:
            raise ConfigError(
                f"{where}: the YAML alias at line {node.start_mark.line + 1} refers to itself (a recursive "
                "anchor); pipeline files cannot be recursive", source=where,
            )
        if key in seen:
            uses += 1
            if uses > MAX_YAML_ALIASES:
                raise ConfigError(
                    f"{where}: the YAML uses more than {MAX_YAML_ALIASES} aliases (*name references, the last "
                    f"at line {node.start_mark.line + 1}); write the values out, or use fewer aliases", source=where,
                )
            if key in sizes:
                continue
        seen.add(key)
        stack.append((node, True, path))
        for child in reversed(_children(node)):
            stack.append((child, False, path + (key,)))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_pipeline(
    data: Any, *, path: str | None = None, registry=None, env: Mapping[str, str] | None = None,
    home: str | os.PathLike | None = None,
) -> PipelineSpec:
    """Validate a pipeline given as a mapping (the parsed YAML); raise ConfigError with every problem."""
    from osmosis_beam.registry import default_registry

    registry = registry or default_registry()
    where = path or "<pipeline>"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a pipeline file must be a mapping with id, source and sink", source=path)
    problems: list[str] = []
    base_dir = Path(path).resolve().parent if path else Path.cwd()
    raw = dict(data)
    for key in raw:
        if key not in _TOP_KEYS:
            problems.append(f"{key}: unknown key{suggest(key, _TOP_KEYS)}; known: {', '.join(_TOP_KEYS)}")
    refs: dict[str, str] = {}  # option path -> its ${VAR} text (secrets travel to remote workers as that text)
    resolved = interpolate_env(raw, "", problems, env, refs)
    problems[:] = [p.lstrip(".") for p in problems]
    # A path whose ${VAR} is unset reports that, not also the empty value it left behind.
    env_paths = {p.split(": ", 1)[0] for p in problems if ": environment variable " in p}

    pid = resolved.get("id")
    if pid is None:
        problems.append("id: required (lowercase letters, digits, '_' and '-')")
    elif not isinstance(pid, str):
        problems.append(f"id: must be text, got {pid!r}; quote it (id: \"{pid}\")")
    elif not PIPELINE_ID.fullmatch(pid):
        problems.append(f"id: {pid!r} is invalid; use only lowercase letters, digits, '_' and '-'")

    source = _plugin_section(resolved, "source", "connector", registry, problems, base_dir, refs)
    sink = _plugin_section(resolved, "sink", "sink", registry, problems, base_dir, refs)
    if sink is not None:
        problems += sink_placement_problems(registry, sink, home=home, pipeline_file=path)
    incremental = _incremental(resolved.get("incremental"), problems)
    steps = _steps(resolved.get("steps"), registry, problems)
    schedule = _schedule(resolved.get("schedule"), problems)
    runner = _runner(resolved.get("runner"), problems)
    read = _read(resolved.get("read"), problems)
    dead_letter = _dead_letter(resolved.get("dead_letter"), problems, base_dir)
    notify = parse_notify(resolved.get("notify"), problems)
    if source is not None and not problems:
        # Problems that need the source's options and `incremental` together (a cursor the connector does
        # not support, a cursor it requires): build the connector once, offline, and report them now.
        problems += _connector_problems(registry, source, incremental)

    if env_paths:
        problems[:] = [
            p for p in problems if ": environment variable " in p or p.split(": ", 1)[0] not in env_paths
        ]
    if problems:
        raise ConfigError(problems=problems, source=path or None)
    return PipelineSpec(
        id=pid,
        source=source,
        sink=sink,
        incremental=incremental,
        steps=steps,
        schedule=schedule,
        runner=runner,
        read=read,
        dead_letter=dead_letter,
        notify=notify,
        path=path,
        raw=raw,
    )


def _plugin_section(data, section, kind, registry, problems, base_dir, refs=None):
    body = data.get(section)
    if body is None:
        problems.append(f"{section}: required (a mapping with 'type' and the {kind}'s options)")
        return None
    if not isinstance(body, Mapping):
        problems.append(f"{section}: must be a mapping with 'type' and the {kind}'s options")
        return None
    type_name = body.get("type")
    if not type_name:
        known = registry.names(kind)
        problems.append(f"{section}.type: required; known: {', '.join(known)}")
        return None
    try:
        cls = registry.lookup(kind, str(type_name))
    except ConfigError as exc:
        problems.append(f"{section}.type: {exc.message}")
        return None
    declared = getattr(cls, "options", None)
    if not isinstance(declared, (list, tuple)):
        problems.append(f"{section}.type: {type_name!r} is not a {kind} type (it declares no 'options')")
        return None
    options = {k: v for k, v in body.items() if k != "type"}
    values = validate_options(options, declared, section, problems, base_dir, env_refs=refs)
    add_check_problems(cls, values, section, problems)
    spec_cls = SourceSpec if section == "source" else SinkSpec
    return spec_cls(type=str(type_name), options=values)


def sink_placement_problems(registry, sink: SinkSpec, *, home=None, pipeline_file=None) -> list[str]:
    """Where the sink writes, checked against the home (default: ``$OSMOSIS_HOME`` or ``./.osmosis``) and the
    pipeline file, as ``sink.<option>: ...`` problems."""
    from osmosis_beam.state.store import resolve_home

    cls = registry.lookup("sink", sink.type)
    check = getattr(cls, "placement_problems", None)
    if check is None:
        return []
    return [f"sink.{p}" for p in check(sink.options, home=resolve_home(home), pipeline_file=pipeline_file)]


def _connector_problems(registry, source: SourceSpec, incremental: IncrementalSpec) -> list[str]:
    from osmosis_beam.io.base import BaseConnector

    cls = registry.lookup("connector", source.type)
    if not (isinstance(cls, type) and issubclass(cls, BaseConnector)):
        return []  # a plug-in with its own constructor: checked when it is built
    try:
        cls(dict(source.options), incremental=incremental)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _incremental(body, problems) -> IncrementalSpec:
    if body is None:
        return IncrementalSpec()
    if not isinstance(body, Mapping):
        problems.append("incremental: must be a mapping")
        return IncrementalSpec()
    values = validate_options(body, _INCREMENTAL, "incremental", problems)
    max_window, lookback = values.get("max_window"), values.get("lookback") or dt.timedelta(0)
    if max_window is not None and max_window <= lookback:
        # hi is capped at lo + max_window = watermark - lookback + max_window: the watermark could never move.
        problems.append(
            f"incremental.max_window: must be longer than lookback ({format_duration(lookback)}), "
            "or the window never advances"
        )
    return IncrementalSpec(**{k: v for k, v in values.items() if v is not None or k == "safety_lag"})


def _read(body, problems) -> ReadSpec:
    if body is None:
        return ReadSpec()
    if not isinstance(body, Mapping):
        problems.append("read: must be a mapping (splits, batch_size, path)")
        return ReadSpec()
    values = validate_options(body, _READ, "read", problems)
    return ReadSpec(**{k: v for k, v in values.items() if v is not None})


_DEAD_LETTER = (
    Option("path", "path", help="the dead-letter folder (default HOME/dead_letter/<id>/)"),
    Option("max_count", "int", minimum=0, help="fail the run when a window has more dead letters than this"),
    Option("max_ratio", "float", default=0.1, minimum=0,
           help="fail the run when more than this share of a window's records are dead (default 0.1; 1 = never)"),
)


def _dead_letter(body, problems, base_dir) -> DeadLetterSpec:
    if body is None:
        return DeadLetterSpec()
    if isinstance(body, str):
        body = {"path": body}
    if not isinstance(body, Mapping):
        problems.append("dead_letter: must be a path or a mapping with path, max_count, max_ratio")
        return DeadLetterSpec()
    values = validate_options(body, _DEAD_LETTER, "dead_letter", problems, base_dir)
    ratio = values.get("max_ratio")
    if isinstance(ratio, (int, float)) and ratio > 1:
        problems.append(f"dead_letter.max_ratio: a share between 0 and 1 (0.1 is 10%), got {ratio!r}")
    if values.get("path") is not None and "://" in str(values["path"]):
        problems.append(f"dead_letter.path: {values['path']!r} is a URL; dead letters go to a local folder")
    return DeadLetterSpec(
        path=values.get("path"), max_count=values.get("max_count"),
        max_ratio=float(ratio) if isinstance(ratio, (int, float)) else 0.1,
    )


def _steps(body, registry, problems) -> tuple[StepSpec, ...]:
    if body is None:
        return ()
    if not isinstance(body, list):
        problems.append("steps: must be a list of {<step name>: <options>}")
        return ()
    out = []
    for index, item in enumerate(body, start=1):
        where = f"steps[{index}]"
        on_error = "dead_letter"
        if isinstance(item, str):
            item = {item: None}
        if not isinstance(item, Mapping) or not item:
            problems.append(f"{where}: must be a mapping like {{filter: 'amount > 0'}}")
            continue
        item = dict(item)
        if "on_error" in item:
            on_error = item.pop("on_error")
            if on_error not in ("dead_letter", "fail"):
                problems.append(f"{where}.on_error: must be dead_letter or fail, got {on_error!r}")
        if not item:
            problems.append(f"{where}: no step given, only on_error")
            continue
        if len(item) != 1:
            problems.append(f"{where}: one step per list item, got {', '.join(map(str, item))}")
            continue
        (name, config), = item.items()
        try:
            cls = registry.step(str(name))
        except ConfigError as exc:
            problems.append(f"{where} ({name}): {exc.message}")
            continue
        check = getattr(cls, "check_config", None)
        if check is not None:
            for problem in check(config) or ():
                problems.append(f"{where} ({name}): {problem}")
        out.append(StepSpec(index=index, name=str(name), config=config, on_error=on_error))
    return tuple(out)


def _schedule(body, problems) -> ScheduleSpec | None:
    if body is None:
        return None
    if not isinstance(body, Mapping):
        problems.append("schedule: must be a mapping with 'every' or 'cron'")
        return None
    for key in body:
        if key not in _SCHEDULE_KEYS:
            problems.append(f"schedule.{key}: unknown key{suggest(key, _SCHEDULE_KEYS)}; known: {', '.join(_SCHEDULE_KEYS)}")
    given = [k for k in ("every", "interval_minutes", "cron") if body.get(k) is not None]
    if len(given) != 1:
        problems.append("schedule: give exactly one of every, interval_minutes or cron")
        return None
    timezone = body.get("timezone") or "UTC"
    try:
        zoneinfo.ZoneInfo(str(timezone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"schedule.timezone: unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)")
    every = cron = None
    if "every" in given:
        try:
            every = parse_duration(body["every"])
        except ValueError as exc:
            problems.append(f"schedule.every: {exc}")
    elif "interval_minutes" in given:
        value = body["interval_minutes"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"schedule.interval_minutes: must be a positive number, got {value!r}")
        else:
            every = dt.timedelta(minutes=value)
    else:
        from croniter import croniter

        cron = str(body["cron"]).strip()
        if not croniter.is_valid(cron):
            problems.append(f"schedule.cron: invalid cron expression {cron!r}")
        elif not _cron_fires(cron):
            problems.append(
                f"schedule.cron: {cron!r} never fires (no such date, e.g. 30 February); "
                "check the day-of-month and month fields"
            )
    if every is not None and every.total_seconds() < 1:
        problems.append("schedule.every: must be at least 1s")
    return ScheduleSpec(every=every, cron=cron, timezone=str(timezone))


def _cron_fires(cron: str) -> bool:
    """Whether a valid cron expression has a next tick at all (``0 0 30 2 *`` has none)."""
    from croniter import CroniterBadDateError, croniter

    try:
        croniter(cron, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        return False
    return True


def _runner(body, problems) -> RunnerSpec:
    if body is None:
        return RunnerSpec()
    if isinstance(body, str):
        body = {"name": body}
    if not isinstance(body, Mapping):
        problems.append("runner: must be a runner name or a mapping with 'name' and 'options'")
        return RunnerSpec()

    name = body.get("name", "direct")
    for key in body:
        if key not in ("name", "options"):
            problems.append(f"runner.{key}: unknown key; known: name, options")
    if name not in RUNNERS:
        problems.append(f"runner.name: unknown runner {name!r}{suggest(name, RUNNERS)}; known: {', '.join(RUNNERS)}")
    options = body.get("options") or {}
    if not isinstance(options, Mapping):
        problems.append("runner.options: must be a mapping")
        options = {}
    return RunnerSpec(name=str(name), options=dict(options))
