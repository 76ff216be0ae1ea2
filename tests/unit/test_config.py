"""Pipeline YAML: the contract, ${ENV} interpolation, and validation that reports every error at once."""
from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import textwrap
from pathlib import Path

import pytest

from osmosis_beam.config import (
    PipelineSpec,
    StepSpec,
    interpolate_env,
    load_pipeline,
    parse_pipeline,
)
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.options import Option, suggest, validate_options
from osmosis_beam.core.secrets import Secret
from osmosis_beam.registry import ConnectorRegistry

UTC = dt.timezone.utc
CONTRACT_YAML = """\
id: tech_news                 # [a-z0-9_-]+, unique within a home
source:
  type: rss                   # a registered connector type
  url: http://127.0.0.1:8000/feed.xml      # connector options sit beside `type`
incremental:                  # optional; each connector has defaults
  cursor_field: published
  start: "2024-01-01T00:00:00Z"   # lo of the first window (default: no lower bound)
  lookback: 0s                # durations like 30s, 10m, 2h, 1d
  safety_lag: 0s
steps: []                     # transformation steps, in order
sink:
  type: jsonl
  path: ./data/tech_news      # relative paths resolve against the YAML file's folder
schedule:                     # used by the launcher
  every: 15m                  # or  cron: "*/15 * * * *"
"""


def write(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def base(**overrides):
    data = {
        "id": "news",
        "source": {"type": "rss", "url": "http://127.0.0.1:8000/feed.xml"},
        "sink": {"type": "jsonl", "path": "/tmp/osmosis-out"},
    }
    data.update(overrides)
    return data


def problems_of(data, env=None, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_pipeline(data, env=env if env is not None else {}, **kwargs)
    return info.value.problems


def one_problem(data, env=None, **kwargs) -> str:
    found = problems_of(data, env, **kwargs)
    assert len(found) == 1, found
    return found[0]


# -- the contract as written ----------------------------------------------------------------------------------------
def test_contract_example_loads_with_every_field_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the sink path must not depend on the working directory
    path = write(tmp_path / "pipelines", CONTRACT_YAML)

    spec = load_pipeline(path, env={})

    assert isinstance(spec, PipelineSpec)
    assert spec.id == "tech_news"
    assert spec.source.type == "rss"
    assert spec.source.options["url"] == "http://127.0.0.1:8000/feed.xml"
    assert spec.incremental.cursor_field == "published"
    assert spec.incremental.start == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert spec.incremental.start.utcoffset() == dt.timedelta(0)
    assert spec.incremental.lookback == dt.timedelta(0)
    assert spec.incremental.safety_lag == dt.timedelta(0)
    assert spec.steps == ()
    assert spec.sink.type == "jsonl"
    assert spec.sink.options["path"] == str((tmp_path / "pipelines" / "data" / "tech_news").resolve())
    assert spec.schedule.every == dt.timedelta(minutes=15)
    assert spec.schedule.cron is None
    assert spec.path == str(path.resolve())
    assert spec.base_dir == path.resolve().parent


def test_the_repos_demo_pipeline_is_valid(monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.delenv("DEMO_FEED_URL", raising=False)
    monkeypatch.delenv("DEMO_OUTPUT", raising=False)
    spec = load_pipeline(root / "pipelines" / "tech_news.yaml")
    assert spec.id == "tech_news"
    assert spec.source.options["url"].startswith("http://127.0.0.1:")
    assert Path(spec.sink.options["path"]).is_relative_to(root / "pipelines")


def test_optional_sections_have_defaults():
    spec = parse_pipeline(base(), env={})
    assert spec.incremental.start is None
    assert spec.incremental.lookback == dt.timedelta(0)
    assert spec.incremental.safety_lag is None  # the connector's default applies
    assert spec.schedule is None
    assert spec.runner.name == "direct"
    assert spec.read.splits == 4 and spec.read.batch_size == 2000
    assert spec.dead_letter_path is None


def test_spec_is_frozen():
    spec = parse_pipeline(base(), env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.id = "other"  # type: ignore[misc]


# -- relative paths -------------------------------------------------------------------------------------------------
def test_relative_sink_and_dead_letter_paths_resolve_against_the_yaml_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        tmp_path / "conf" / "nested",
        """\
        id: news
        source: {type: rss, url: "http://127.0.0.1/feed"}
        sink: {type: jsonl, path: ../out/news}
        dead_letter: ./rejects
        """,
    )
    spec = load_pipeline(path, env={})
    assert spec.sink.options["path"] == str((tmp_path / "conf" / "out" / "news").resolve())
    assert ".." not in spec.sink.options["path"]
    assert spec.dead_letter_path == str((tmp_path / "conf" / "nested" / "rejects").resolve())


def test_absolute_and_home_relative_paths_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    spec = parse_pipeline(base(sink={"type": "jsonl", "path": "/srv/data/./news/"}), path=str(tmp_path / "p.yaml"))
    assert spec.sink.options["path"] == "/srv/data/news"
    spec = parse_pipeline(base(sink={"type": "jsonl", "path": "~/news"}), path=str(tmp_path / "p.yaml"))
    assert spec.sink.options["path"] == str(tmp_path / "user" / "news")


def test_a_path_given_through_env_is_resolved_too(tmp_path):
    path = write(tmp_path, "id: news\nsource: {type: rss, url: 'http://h/f'}\nsink: {type: jsonl, path: '${OUT:-./data}'}\n")
    assert load_pipeline(path, env={}).sink.options["path"] == str(tmp_path.resolve() / "data")
    assert load_pipeline(path, env={"OUT": "/abs/out"}).sink.options["path"] == "/abs/out"


# -- ${ENV} interpolation -------------------------------------------------------------------------------------------
def test_env_references_are_replaced_everywhere():
    env = {"FEED_HOST": "127.0.0.1", "FEED_PORT": "8000", "OUT": "/data/out"}
    spec = parse_pipeline(
        base(
            source={"type": "rss", "url": "http://${FEED_HOST}:${FEED_PORT}/feed.xml", "headers": {"X-Host": "${FEED_HOST}"}},
            sink={"type": "jsonl", "path": "${OUT}"},
        ),
        env=env,
    )
    assert spec.source.options["url"] == "http://127.0.0.1:8000/feed.xml"
    assert spec.source.options["headers"] == {"X-Host": "127.0.0.1"}
    assert spec.sink.options["path"] == "/data/out"


def test_default_is_used_only_when_the_variable_is_unset():
    data = base(source={"type": "rss", "url": "${FEED_URL:-http://fallback/feed}"})
    assert parse_pipeline(data, env={}).source.options["url"] == "http://fallback/feed"
    assert parse_pipeline(data, env={"FEED_URL": "http://real/feed"}).source.options["url"] == "http://real/feed"
    # Set but empty is "set": the empty value wins (the shell's ${VAR-default} behaviour is not implied).
    problems = []
    assert interpolate_env("${X:-dflt}", "p", problems, env={"X": ""}) == ""
    assert interpolate_env("a${X:-}b", "p", problems, env={}) == "ab"
    assert problems == []


def test_os_environ_is_used_when_no_env_is_given(monkeypatch):
    monkeypatch.setenv("OSMOSIS_TEST_FEED", "http://from-environ/feed")
    spec = parse_pipeline(base(source={"type": "rss", "url": "${OSMOSIS_TEST_FEED}"}))
    assert spec.source.options["url"] == "http://from-environ/feed"


def test_unset_variable_is_one_problem_at_its_path():
    found = problems_of(base(source={"type": "rss", "url": "${FEED_URL}"}))
    # Only the cause: not also "must not be empty" for the hole it left.
    assert found == ["source.url: environment variable FEED_URL is not set (export it, or write ${FEED_URL:-default})"]


def test_every_unset_variable_is_reported_with_its_own_path():
    data = base(
        source={"type": "rss", "url": "http://${HOST}/feed", "headers": {"Authorization": "Bearer ${TOKEN}"}},
        steps=[{"filter": "${EXPR}"}],
    )
    found = problems_of(data)
    assert any(p.startswith("source.url: environment variable HOST is not set") for p in found), found
    assert any(p.startswith("source.headers.Authorization: environment variable TOKEN is not set") for p in found), found
    assert any(p.startswith("steps[1].filter: environment variable EXPR is not set") for p in found), found


def test_whole_value_numbers_keep_their_type_and_strings_stay_exact():
    spec = parse_pipeline(
        base(read={"splits": "${SPLITS}", "batch_size": "${BATCH:-500}"}, schedule={"interval_minutes": "${EVERY}"}),
        env={"SPLITS": "8", "EVERY": "2.5"},
    )
    assert spec.read.splits == 8 and spec.read.batch_size == 500
    assert spec.schedule.every == dt.timedelta(minutes=2.5)
    # YAML 1.1 would turn these into 83, 750, True and 1000: a string option must get the text as written.
    for text in ("0123", "12:30", "yes", "1_000", "0x1F", "1.50", "+5", ".inf"):
        spec = parse_pipeline(base(source={"type": "rss", "url": "http://h/f", "user_agent": "${UA}"}), env={"UA": text})
        assert spec.source.options["user_agent"] == text
    problems = []
    assert interpolate_env("${N}", "p", problems, env={"N": "-42"}) == -42
    assert interpolate_env("${N}", "p", problems, env={"N": "007"}) == "007"
    assert interpolate_env("x${N}", "p", problems, env={"N": "1"}) == "x1"


def test_bool_options_accept_env_text():
    spec = parse_pipeline(base(source={"type": "rss", "url": "http://h/f", "verify_tls": "${TLS}"}), env={"TLS": "false"})
    assert spec.source.options["verify_tls"] is False


def test_raw_keeps_the_references_unresolved():
    data = base(source={"type": "rss", "url": "${FEED_URL}"})
    spec = parse_pipeline(data, env={"FEED_URL": "http://resolved/feed"})
    assert spec.raw["source"]["url"] == "${FEED_URL}"
    assert spec.source.options["url"] == "http://resolved/feed"


# -- every error at once, each with its path ------------------------------------------------------------------------
def test_every_problem_is_reported_at_once_with_its_path(tmp_path):
    path = write(
        tmp_path,
        """\
        id: Tech News
        sourcee: {}
        source:
          type: rss
          timeout: soon
        incremental:
          lookbak: 10m
          start: yesterday
        steps:
          - filter: "amount > 0"
          - filtr: "x"
        sink:
          type: jsonl
        schedule:
          cron: "61 * * * *"
          timezone: Mars/Olympus
        read:
          splits: 0
        runner: sparky
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, env={})
    found = info.value.problems
    expected_prefixes = [
        "sourcee: unknown key (did you mean 'source'?)",
        "id: 'Tech News' is invalid",
        "source.url: required",
        "source.timeout: invalid duration 'soon'",
        "incremental.lookbak: unknown option (did you mean 'lookback'?)",
        "incremental.start: invalid timestamp 'yesterday'",
        "steps[2] (filtr): unknown step 'filtr' (did you mean 'filter'?)",
        "sink.path: required",
        "schedule.timezone: unknown time zone 'Mars/Olympus'",
        "schedule.cron: invalid cron expression '61 * * * *'",
        "read.splits: must be at least 1, got 0",
        "runner.name: unknown runner 'sparky'",
    ]
    for prefix in expected_prefixes:
        assert sum(p.startswith(prefix) for p in found) == 1, (prefix, found)
    assert len(found) == len(expected_prefixes), found
    assert "schedule.cron: invalid cron expression '61 * * * *'" in found
    # The message names the file and counts the problems, one per line.
    message = str(info.value)
    assert message.startswith(f"{path.resolve()}: {len(found)} problems:")
    assert all(f"  - {p}" in message for p in found)
    assert info.value.exit_code == 2


def test_a_single_problem_reads_as_one_line():
    with pytest.raises(ConfigError) as info:
        parse_pipeline(base(source={"type": "rss"}), env={}, path="/p/news.yaml")
    assert str(info.value) == "/p/news.yaml: source.url: required (the feed's http(s) URL)"


def test_config_error_pickles_with_its_problems():
    with pytest.raises(ConfigError) as info:
        parse_pipeline(base(id="BAD", source={"type": "rss"}), env={})
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.problems == info.value.problems
    assert str(copy) == str(info.value)


def test_connector_check_options_problems_carry_the_section():
    assert one_problem(base(source={"type": "rss", "url": "ftp://h/feed"})) == "source.url: 'ftp://h/feed' is not an http(s) URL"


def test_missing_and_malformed_sections():
    found = problems_of({"id": "news", "sink": ["jsonl"]})
    assert "source: required (a mapping with 'type' and the connector's options)" in found
    assert "sink: must be a mapping with 'type' and the sink's options" in found
    found = problems_of(base(source={"url": "http://h/f"}))
    assert found[0].startswith("source.type: required; known: ") and "rss" in found[0]


def test_non_mapping_document_is_rejected():
    with pytest.raises(ConfigError, match="must be a mapping with id, source and sink"):
        parse_pipeline(["id", "source"], env={})


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "id: news\nsource: {type: rss\nsink: x\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, env={})
    assert "invalid YAML at line" in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such pipeline file"):
        load_pipeline(tmp_path / "nope.yaml")


# -- unknown keys, with suggestions ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, expected",
    [
        (base(sinkk={}), "sinkk: unknown key (did you mean 'sink'?); known: id, source, incremental, steps, sink, schedule, runner, read, dead_letter, notify, description"),
        (base(source={"type": "rss", "url": "http://h/f", "urll": "x"}), "source.urll: unknown option (did you mean 'url'?); known: backdated_lookback, connect_timeout, deadline, headers, max_bytes, max_redirects, max_retry_wait, page_deadline, request_interval, respect_robots_txt, retries, retry_backoff, timeout, url, user_agent, verify_tls"),
        (base(incremental={"safety_lagg": "1s"}), "incremental.safety_lagg: unknown option (did you mean 'safety_lag'?); known: cursor_field, lookback, max_window, safety_lag, start"),
        (base(schedule={"every": "1m", "evry": "2m"}), "schedule.evry: unknown key (did you mean 'every'?); known: every, interval_minutes, cron, timezone"),
        (base(sink={"type": "jsonl", "path": "/x", "compression": "gzip"}), "sink.compression: unknown option; known: path"),
    ],
)
def test_unknown_keys_are_named_with_a_suggestion(data, expected):
    assert one_problem(data) == expected


def test_unknown_types_list_the_known_ones():
    found = problems_of(base(source={"type": "rsss", "url": "http://h/f"}, sink={"type": "jsonll", "path": "/x"}))
    assert found[0].startswith("source.type: unknown connector 'rsss' (did you mean 'rss'?); known: ")
    assert "rss" in found[0].split("known: ")[1].split(", ")
    assert found[1].startswith("sink.type: unknown sink 'jsonll' (did you mean 'jsonl'?); known: ")


def test_an_import_path_that_is_not_a_connector_is_a_problem_not_a_crash():
    assert one_problem(base(source={"type": "collections:OrderedDict"})) == (
        "source.type: 'collections:OrderedDict' is not a connector type (it declares no 'options')"
    )
    assert one_problem(base(sink={"type": "os.path:join"})) == "sink.type: 'os.path:join' is not a sink type (it declares no 'options')"


def test_suggest():
    assert suggest("postgress", ["mongodb", "postgres", "rss"]) == " (did you mean 'postgres'?)"
    assert suggest("zzz", ["mongodb", "postgres"]) == ""


# -- ids ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pid", ["news", "tech_news-2", "a", "2024"])
def test_valid_ids(pid):
    assert parse_pipeline(base(id=pid), env={}).id == pid


@pytest.mark.parametrize("pid", ["Tech", "tech news", "tech.news", "", "tech\n", "ünï", "../x"])
def test_invalid_ids(pid):
    assert one_problem(base(id=pid)) == f"id: {pid!r} is invalid; use only lowercase letters, digits, '_' and '-'"


def test_non_text_id_says_to_quote_it():
    assert one_problem(base(id=2024)) == "id: must be text, got 2024; quote it (id: \"2024\")"


def test_missing_id():
    data = base()
    del data["id"]
    assert one_problem(data) == "id: required (lowercase letters, digits, '_' and '-')"


# -- durations and timestamps ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [("30s", dt.timedelta(seconds=30)), ("10m", dt.timedelta(minutes=10)), ("2h", dt.timedelta(hours=2)),
     ("1d", dt.timedelta(days=1)), ("1.5h", dt.timedelta(minutes=90)), (45, dt.timedelta(seconds=45)),
     ("250ms", dt.timedelta(milliseconds=250)), ("1w", dt.timedelta(weeks=1))],
)
def test_durations(text, expected):
    spec = parse_pipeline(base(incremental={"lookback": text}), env={})
    assert spec.incremental.lookback == expected


@pytest.mark.parametrize("text", ["10 minutes", "-5s", "1h30m", "5M", True, "99999999999999d"])
def test_bad_durations_are_problems(text):
    problem = one_problem(base(incremental={"safety_lag": text}))
    assert problem.startswith(f"incremental.safety_lag: invalid duration {text!r}"), problem


def test_max_window_must_exceed_lookback():
    spec = parse_pipeline(base(incremental={"lookback": "1h", "max_window": "1d"}), env={})
    assert spec.incremental.max_window == dt.timedelta(days=1)
    assert one_problem(base(incremental={"max_window": "0s"})) == (
        "incremental.max_window: must be longer than lookback (0s), or the window never advances"
    )
    assert one_problem(base(incremental={"lookback": "2h", "max_window": "1h"})).startswith(
        "incremental.max_window: must be longer than lookback (2h)"
    )


def test_start_accepts_offsets_and_unquoted_yaml_timestamps(tmp_path):
    spec = parse_pipeline(base(incremental={"start": "2024-06-01T12:00:00+02:00"}), env={})
    assert spec.incremental.start == dt.datetime(2024, 6, 1, 10, tzinfo=UTC)
    path = write(tmp_path, "id: news\nsource: {type: rss, url: 'http://h/f'}\nsink: {type: jsonl, path: /x}\n"
                           "incremental: {start: 2024-01-01T00:00:00Z}\n")
    assert load_pipeline(path, env={}).incremental.start == dt.datetime(2024, 1, 1, tzinfo=UTC)


def test_start_without_a_time_zone_is_rejected_readably(tmp_path):
    assert one_problem(base(incremental={"start": "2024-01-01T00:00:00"})) == (
        "incremental.start: timestamp '2024-01-01T00:00:00' has no time zone: add one (e.g. 'Z' or '+02:00')"
    )
    path = write(tmp_path, "id: news\nsource: {type: rss, url: 'http://h/f'}\nsink: {type: jsonl, path: /x}\n"
                           "incremental: {start: 2024-01-01}\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, env={})
    assert info.value.problems == ["incremental.start: timestamp '2024-01-01' has no time zone: add one (e.g. 'Z' or '+02:00')"]


# -- steps ----------------------------------------------------------------------------------------------------------
def test_valid_steps_keep_order_index_name_and_on_error():
    spec = parse_pipeline(
        base(steps=[{"filter": "amount > 0"}, {"select": ["id", "amount"], "on_error": "fail"}, {"rename": {"a": "b"}}]),
        env={},
    )
    assert spec.steps == (
        StepSpec(1, "filter", "amount > 0", "dead_letter"),
        StepSpec(2, "select", ["id", "amount"], "fail"),
        StepSpec(3, "rename", {"a": "b"}, "dead_letter"),
    )
    assert [s.label for s in spec.steps] == ["1: filter", "2: select", "3: rename"]


def test_step_errors_name_the_index_and_the_step():
    found = problems_of(
        base(
            steps=[
                {"filter": "amount > 0"},
                {"filtr": "x"},
                {"filter": "amount >"},
                {"map": {"a": "1"}, "on_error": "explode"},
                {"filter": "a", "select": ["a"]},
                {"on_error": "fail"},
                42,
            ]
        )
    )
    assert found[0].startswith("steps[2] (filtr): unknown step 'filtr' (did you mean 'filter'?); known: ")
    assert found[1].startswith("steps[3] (filter): ") and "invalid Python expression 'amount >'" in found[1]
    assert found[2] == "steps[4].on_error: must be dead_letter or fail, got 'explode'"
    assert found[3] == "steps[5]: one step per list item, got filter, select"
    assert found[4] == "steps[6]: no step given, only on_error"
    assert found[5] == "steps[7]: must be a mapping like {filter: 'amount > 0'}"
    assert len(found) == 6


def test_steps_must_be_a_list():
    assert one_problem(base(steps={"filter": "x"})) == "steps: must be a list of {<step name>: <options>}"


# -- schedule --------------------------------------------------------------------------------------------------------
def test_schedule_forms():
    assert parse_pipeline(base(schedule={"every": "90s"}), env={}).schedule.every == dt.timedelta(seconds=90)
    assert parse_pipeline(base(schedule={"interval_minutes": 5}), env={}).schedule.every == dt.timedelta(minutes=5)
    spec = parse_pipeline(base(schedule={"cron": "*/15 * * * *", "timezone": "Europe/Berlin"}), env={})
    assert (spec.schedule.cron, spec.schedule.timezone, spec.schedule.every) == ("*/15 * * * *", "Europe/Berlin", None)
    assert spec.schedule.to_dict() == {"cron": "*/15 * * * *", "timezone": "Europe/Berlin"}
    assert parse_pipeline(base(schedule={"every": "1h"}), env={}).schedule.to_dict() == {"every": "1h"}


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ({"cron": "61 * * * *"}, "schedule.cron: invalid cron expression '61 * * * *'"),
        ({"cron": "every day"}, "schedule.cron: invalid cron expression 'every day'"),
        ({"every": "1m", "cron": "* * * * *"}, "schedule: give exactly one of every, interval_minutes or cron"),
        ({}, "schedule: give exactly one of every, interval_minutes or cron"),
        ({"every": "0s"}, "schedule.every: must be at least 1s"),
        ({"interval_minutes": -1}, "schedule.interval_minutes: must be a positive number, got -1"),
        ({"interval_minutes": True}, "schedule.interval_minutes: must be a positive number, got True"),
        ({"cron": "0 * * * *", "timezone": "Berlin"}, "schedule.timezone: unknown time zone 'Berlin' (use an IANA name like Europe/Berlin)"),
        ("15m", "schedule: must be a mapping with 'every' or 'cron'"),
    ],
)
def test_schedule_problems(schedule, expected):
    assert one_problem(base(schedule=schedule)) == expected


# -- runner, read, dead letter -----------------------------------------------------------------------------------------
def test_runner_forms_and_problems():
    assert parse_pipeline(base(runner="flink"), env={}).runner.name == "flink"
    spec = parse_pipeline(base(runner={"name": "portable", "options": {"job_endpoint": "localhost:8099"}}), env={})
    assert spec.runner.options == {"job_endpoint": "localhost:8099"}
    assert one_problem(base(runner="flik")) == "runner.name: unknown runner 'flik' (did you mean 'flink'?); known: direct, portable, flink, spark, prism, dataflow"
    assert one_problem(base(runner={"name": "direct", "opts": {}})) == "runner.opts: unknown key; known: name, options"


def test_read_options_are_whole_numbers():
    assert one_problem(base(read={"batch_size": "lots"})) == "read.batch_size: must be a whole number, got 'lots'"
    assert one_problem(base(read={"splits": 2.5})) == "read.splits: must be a whole number, got 2.5"


def test_dead_letter_mapping_is_validated_like_other_options():
    assert one_problem(base(dead_letter={"max_ratio": 2})) == (
        "dead_letter.max_ratio: a share between 0 and 1 (0.1 is 10%), got 2.0"
    )
    assert one_problem(base(dead_letter={"max_count": -1})) == "dead_letter.max_count: must be at least 0, got -1"
    assert one_problem(base(dead_letter={"max_ratio": "lots"})).startswith("dead_letter.max_ratio: ")
    assert one_problem(base(dead_letter={"pth": "x"})).startswith("dead_letter.pth: unknown")
    spec = parse_pipeline(base(dead_letter={"max_count": 5}))
    assert (spec.dead_letter.path, spec.dead_letter.max_count, spec.dead_letter.max_ratio) == (None, 5, 0.1)


# -- options: kinds, secrets --------------------------------------------------------------------------------------------
def test_validate_options_kinds_and_defaults(tmp_path):
    declared = (
        Option("name", required=True),
        Option("port", "int", default=5432, minimum=1),
        Option("ratio", "float"),
        Option("on", "bool", default=True),
        Option("tags", "list", default=[]),
        Option("mode", choices=("append", "upsert"), default="append"),
        Option("dir", "path"),
    )
    problems: list[str] = []
    values = validate_options(
        {"name": "x", "port": "6543", "ratio": "0.5", "on": "no", "tags": "a", "dir": "sub"}, declared, "sink", problems, tmp_path
    )
    assert problems == []
    assert values == {"name": "x", "port": 6543, "ratio": 0.5, "on": False, "tags": ["a"], "mode": "append",
                      "dir": str(tmp_path.resolve() / "sub")}
    # A mutable default is copied, never shared between specs.
    values["tags"].append("changed")
    assert declared[4].default == []

    problems = []
    validate_options({"name": " ", "port": 0, "ratio": "x", "on": "maybe", "mode": "merge", "tags": {"a": 1}}, declared, "sink", problems)
    assert problems == [
        "sink.name: must not be empty",
        "sink.port: must be at least 1, got 0",
        "sink.ratio: must be a number, got 'x'",
        "sink.on: must be true or false, got 'maybe'",
        "sink.tags: must be a list, got {'a': 1}",
        "sink.mode: must be one of append, upsert, got 'merge'",
    ]


def _secret_registry():
    from osmosis_beam.io.base import BaseConnector
    from osmosis_beam.io.files.jsonl import JSONLSink

    class Vault(BaseConnector):
        """A connector with secret options."""

        type_name = "vault"
        options = (Option("user"), Option("password", secret=True), Option("pin", "int", secret=True, choices=(1, 2)))

    registry = ConnectorRegistry(builtins=False, entry_points=False)
    registry.register("connector", "vault", Vault)
    registry.register("sink", "jsonl", JSONLSink)
    return registry


def test_secret_options_are_wrapped_and_never_shown():
    registry = _secret_registry()
    spec = parse_pipeline(
        base(source={"type": "vault", "user": "app", "password": "${DB_PASSWORD}"}),
        env={"DB_PASSWORD": "hunter2"},
        registry=registry,
    )
    assert isinstance(spec.source.options["password"], Secret)
    assert spec.source.options["password"].reveal() == "hunter2"
    assert "hunter2" not in repr(spec) and "hunter2" not in str(spec.source)
    assert spec.secret_values() == ["hunter2"]
    # A bad secret value is named by its path, its value is not.
    with pytest.raises(ConfigError) as info:
        parse_pipeline(base(source={"type": "vault", "pin": 987654}), env={}, registry=registry)
    assert info.value.problems == ["source.pin: must be one of 1, 2, got ***"]
    assert "987654" not in str(info.value)


def test_validate_reports_cursor_problems_the_connector_finds():
    # These need the source's options and `incremental` together: the connector is built offline at validation.
    with pytest.raises(ConfigError) as info:
        parse_pipeline({"id": "r", "source": {"type": "rss", "url": "http://x/feed"},
                        "incremental": {"cursor_field": "created"}, "sink": {"type": "jsonl", "path": "/tmp/o"}})
    assert info.value.problems == ["incremental.cursor_field: rss supports updated, published, got 'created'"]
    with pytest.raises(ConfigError) as info:
        parse_pipeline({"id": "m", "source": {"type": "mongodb", "uri": "mongodb://127.0.0.1:1/", "database": "d",
                                              "collection": "c"}, "sink": {"type": "jsonl", "path": "/tmp/o"}})
    assert any(p.startswith("source.cursor_field: required") for p in info.value.problems)
