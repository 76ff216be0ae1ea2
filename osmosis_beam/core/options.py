"""Declared options of connectors, sinks and steps, validated all at once (Beam-free).

Example::

    from osmosis_beam.core.options import Option, validate_options
    problems = []
    values = validate_options({"url": "http://x", "timeout": "5s"},
                              [Option("url", required=True), Option("timeout", "duration")], "source", problems)
    values["timeout"]       # datetime.timedelta(seconds=5); problems == []
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import os
from pathlib import Path
from typing import Any, Mapping

from osmosis_beam.core.secrets import REDACTED, Secret, is_secret_name, reveal
from osmosis_beam.core.timefmt import parse_duration, parse_timestamp

__all__ = ["Option", "validate_options", "add_check_problems", "suggest", "display_options", "plain_value"]

_MISSING = object()


def suggest(name: str, known: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` when ``name`` is close to one of ``known``, else ``''``."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclasses.dataclass(frozen=True)
class Option:
    """One declared option of a connector, sink or step.

    ``kind`` is one of: str, int, float, bool, duration, timestamp, path, list, dict, any.
    """

    name: str
    kind: str = "str"
    required: bool = False
    default: Any = None
    secret: bool = False
    choices: tuple = ()
    minimum: float | None = None
    help: str = ""


def _coerce(
    option: Option, value: Any, path: str, base_dir: Path | None, problems: list[str], env_ref: str | None = None
) -> Any:
    kind = option.kind
    shown = "***" if option.secret else repr(reveal(value))
    raw = reveal(value)
    try:
        if kind == "str":
            if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
                raise ValueError(f"must be text, got {shown}")
            out: Any = str(raw)
            if option.required and not out.strip():
                raise ValueError("must not be empty")
        elif kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, (int, str)):
                raise ValueError(f"must be a whole number, got {shown}")
            out = int(raw)
        elif kind == "float":
            if isinstance(raw, bool):
                raise ValueError(f"must be a number, got {shown}")
            out = float(raw)
        elif kind == "bool":
            if isinstance(raw, bool):
                out = raw
            elif str(raw).lower() in ("true", "yes", "on", "1"):
                out = True
            elif str(raw).lower() in ("false", "no", "off", "0"):
                out = False
            else:
                raise ValueError(f"must be true or false, got {shown}")
        elif kind == "duration":
            out = parse_duration(raw)
        elif kind == "timestamp":
            out = parse_timestamp(raw)
        elif kind == "path":
            if not isinstance(raw, str) or not raw.strip():
                raise ValueError(f"must be a path, got {shown}")
            if "://" in raw:
                out = raw
            else:
                p = Path(raw).expanduser()
                if not p.is_absolute() and base_dir is not None:
                    p = base_dir / p
                out = str(p.resolve()) if not p.is_absolute() else os.path.normpath(str(p))
        elif kind == "list":
            if isinstance(raw, (str, int, float)):
                raw = [raw]
            if not isinstance(raw, list):
                raise ValueError(f"must be a list, got {shown}")
            out = list(raw)
        elif kind == "dict":
            if not isinstance(raw, Mapping):
                raise ValueError(f"must be a mapping (key: value), got {shown}")
            out = dict(raw)
        else:
            out = raw
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        if kind == "int" and "invalid literal" in msg:
            msg = f"must be a whole number, got {shown}"
        elif kind == "float" and "could not convert" in msg:
            msg = f"must be a number, got {shown}"
        problems.append(f"{path}: {msg}")
        return None
    if option.choices and out not in option.choices:
        problems.append(f"{path}: must be one of {', '.join(map(str, option.choices))}, got {shown}")
        return None
    if option.minimum is not None and isinstance(out, (int, float)) and out < option.minimum:
        problems.append(f"{path}: must be at least {option.minimum:g}, got {shown}")
        return None
    if option.secret:
        # Remember the ${VAR} text a secret came from (remote workers get that text, not the value),
        # unless coercion changed the value (then the text alone would not give it back).
        env_ref = env_ref or getattr(value, "env", None)
        if env_ref and not (isinstance(out, (int, float)) and not isinstance(out, bool) or out == str(raw)):
            env_ref = None
        out = Secret(out, env=env_ref)
    return out


def validate_options(
    options: Mapping[str, Any],
    declared: list[Option] | tuple[Option, ...],
    path: str,
    problems: list[str],
    base_dir: Path | None = None,
    what: str = "option",
    env_refs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check ``options`` against ``declared``; append every problem to ``problems``; return the values.

    ``env_refs`` maps an option's path (``source.password``) to its text as written with ``${VAR}`` s.
    """
    known = {o.name: o for o in declared}
    values: dict[str, Any] = {}
    for key in options:
        if key not in known:
            problems.append(
                f"{path}.{key}: unknown {what}{suggest(key, list(known))}; known: {', '.join(sorted(known)) or 'none'}"
            )
    for option in declared:
        raw = options.get(option.name, _MISSING)
        if raw is _MISSING or raw is None:
            if option.required:
                problems.append(f"{path}.{option.name}: required" + (f" ({option.help})" if option.help else ""))
                continue
            default = option.default
            if isinstance(default, (list, dict)):
                default = type(default)(default)
            values[option.name] = default
            continue
        where = f"{path}.{option.name}"
        values[option.name] = _coerce(option, raw, where, base_dir, problems, (env_refs or {}).get(where))
    return values


def add_check_problems(cls: Any, values: Mapping[str, Any], section: str, problems: list[str]) -> None:
    """Run ``cls.check_options(values)`` (cross-option checks) and add what it finds to ``problems``.

    An option that already has a problem reads as None in ``values``; what the check then says about it
    (say, "required") would only repeat that problem in other words, so it is left out.
    """
    check = getattr(cls, "check_options", None)
    if check is None:
        return
    known = {p.split(":", 1)[0] for p in problems}
    for problem in check(values) or ():
        path = f"{section}.{problem}"
        option = path.split(":", 1)[0].split("[", 1)[0]
        if path not in problems and option not in known:
            problems.append(path)


def plain_value(value: Any) -> Any:
    """A value as shown in logs and display data: durations as ``30s``, datetimes as ISO text."""
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def display_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Options with secrets shown as ``***`` (for logs and Beam display data).

    Besides declared secrets, the entries of a mapping option whose names look secret (an
    ``Authorization`` or ``X-Api-Key`` header, a ``password`` key) are shown as ``***``.
    """
    return {k: _display_value(v) for k, v in config.items()}


def _display_value(value: Any) -> Any:
    if isinstance(value, Secret):
        return repr(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_name(str(k)) else _display_value(v) for k, v in value.items()}
    return plain_value(value)
