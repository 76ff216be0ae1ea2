"""The built-in steps on in-memory records (no Beam), their options, and YAML validation of steps."""
from __future__ import annotations

import datetime as dt
import pickle
from decimal import Decimal

import pytest

from osmosis_beam.config import StepSpec, parse_pipeline
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.models import TransformationStep
from osmosis_beam.steps.base import StepContext
from osmosis_beam.steps.cast import CastStep
from osmosis_beam.steps.dedupe import DedupeStep
from osmosis_beam.steps.expressions import FilterStep, MapStep, compile_expression
from osmosis_beam.steps.fields import DropStep, RenameStep, SelectStep
from osmosis_beam.steps.pipeline import build_step
from osmosis_beam.steps.python import PythonStep
from osmosis_beam.steps.reshape import ExplodeStep, FlattenStep
from osmosis_beam.steps.text import HtmlToTextStep, html_to_text

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def orders():
    return [
        {"id": 1, "amount": Decimal("99.99"), "at": T0, "status": "paid", "tags": ["a", "b"], "user.name": "x"},
        {"id": 2, "amount": Decimal("150.00"), "at": T0 + dt.timedelta(days=40), "status": "void", "tags": [], "user.name": "y"},
        {"id": 3, "amount": Decimal("1000"), "at": T0 + dt.timedelta(days=200), "status": "paid", "tags": ["c"], "user.name": "z"},
    ]


# -- expressions -----------------------------------------------------------------------------------
def test_filter_compares_native_numbers_and_dates():
    assert [r["id"] for r in FilterStep("amount > 100").process(orders())] == [2, 3]
    assert [r["id"] for r in FilterStep("at >= timestamp('2024-02-01')").process(orders())] == [2, 3]
    assert [r["id"] for r in FilterStep("at < datetime(2024, 2, 1, tzinfo=UTC) + timedelta(days=1)").process(orders())] == [1]
    assert [r["id"] for r in FilterStep("status == 'paid' and amount > 100").process(orders())] == [3]


def test_expressions_see_fields_record_helpers_and_comprehensions():
    records = orders()
    assert [r["id"] for r in FilterStep("record['user.name'] in ('x', 'z')").process(records)] == [1, 3]
    assert [r["id"] for r in FilterStep("len(tags) > 0 and all(t != status for t in tags)").process(records)] == [1, 3]
    assert [r["id"] for r in FilterStep("re.match(r'^p', status)").process(records)] == [1, 3]
    out = MapStep({
        "rounded": "round(float(amount))",
        "lo": "min(amount, 100)",
        "hi": "max(id, 2)",
        "label": "str(id) + ':' + status.upper()",
        "day": "at.date()",
        "big": "[t for t in tags if id > 0]",
    }).process(records[:1])
    assert out[0] | {} == {
        **records[0], "rounded": 100, "lo": Decimal("99.99"), "hi": 2, "label": "1:PAID", "day": dt.date(2024, 1, 1),
        "big": ["a", "b"],
    }


def test_map_sets_fields_in_order_and_keeps_the_rest():
    [out] = MapStep({"net": "amount - 10", "gross": "net * 2", "status": "status.title()"}).process(orders()[:1])
    assert out["net"] == Decimal("89.99") and out["gross"] == Decimal("179.98") and out["status"] == "Paid"
    assert out["id"] == 1 and out["tags"] == ["a", "b"]


def test_unknown_name_says_which_fields_exist():
    with pytest.raises(NameError, match=r"'amont' is neither a field of the record nor a helper \(fields: amount, at,"):
        FilterStep("amont > 1").process(orders())


def test_expression_runtime_errors_raise_for_the_dead_letter():
    with pytest.raises(ZeroDivisionError):
        MapStep({"x": "1 // (id - 1)"}).process(orders())
    with pytest.raises(TypeError):  # a datetime is not text: no silent string comparison
        FilterStep("at > '2024-01-01'").process(orders())


@pytest.mark.parametrize(
    "text, message",
    [
        ("amount >", "filter: invalid Python expression 'amount >': it ends too early: something is missing after 'amount >'"),
        ("", "filter: must be a non-empty Python expression"),
        ("().__class__.__bases__", "'__class__' is not allowed"),
        ("[x.__dict__ for x in tags]", "'__dict__' is not allowed"),
        ("__import__('os')", "'__import__' is not allowed"),
    ],
)
def test_bad_expressions_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        FilterStep(text)


def test_builtins_are_restricted():
    with pytest.raises(NameError, match="'open' is neither a field"):
        FilterStep("open('/etc/passwd')").process([{"a": 1}])


def test_compile_expression_names_where():
    with pytest.raises(ConfigError, match=r"map\.total: invalid Python expression"):
        compile_expression("1 +* 2", "map.total")


def test_steps_pickle_and_recompile():
    for step in (FilterStep("amount > 100"), MapStep({"x": "id * 2"}), CastStep({"id": "str"})):
        clone = pickle.loads(pickle.dumps(step))
        assert clone.process(orders()) == step.process(orders())


# -- select, drop, rename ------------------------------------------------------------------------
def test_select_drop_rename():
    rec = {"a": 1, "b": 2, "c": 3}
    assert SelectStep(["c", "a", "z"]).process([rec]) == [{"c": 3, "a": 1, "z": None}]
    assert DropStep(["b", "z"]).process([rec]) == [{"a": 1, "c": 3}]
    assert RenameStep({"a": "x", "z": "y"}).process([rec]) == [{"x": 1, "b": 2, "c": 3}]
    assert SelectStep("a").process([rec]) == [{"a": 1}]


# -- cast ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, value, expected",
    [
        ("int", "42", 42),
        ("int", " 7 ", 7),
        ("int", 3.0, 3),
        ("int", Decimal("12.000"), 12),
        ("int", True, 1),
        ("float", "2.5", 2.5),
        ("float", Decimal("0.1"), 0.1),
        ("decimal", "12.50", Decimal("12.50")),
        ("decimal", 0.1, Decimal("0.1")),
        ("decimal", 7, Decimal(7)),
        ("decimal(6,2)", "1.005", Decimal("1.01")),
        ("decimal(6,2)", "-1.005", Decimal("-1.01")),
        ("decimal(6,2)", 3, Decimal("3.00")),
        ("str", 12, "12"),
        ("str", Decimal("1.50"), "1.50"),
        ("str", T0, "2024-01-01T00:00:00+00:00"),
        ("str", {"a": Decimal("1.5"), "b": [T0]}, '{"a":"1.5","b":["2024-01-01T00:00:00+00:00"]}'),
        ("str", b"caf\xc3\xa9", "café"),
        ("str", False, "false"),
        ("bool", "yes", True),
        ("bool", "Off", False),
        ("bool", 0, False),
        ("bool", "1", True),
        ("datetime", "2024-01-01T02:00:00+02:00", T0),
        ("datetime", "2024-01-01T00:00:00Z", T0),
        ("datetime", 1704067200, T0),
        ("datetime", dt.date(2024, 1, 1), T0),
        ("datetime(Europe/Berlin)", "2024-01-01T01:00:00", T0),
        ("datetime(UTC)", dt.datetime(2024, 1, 1), T0),
        ("timestamp", "2024-01-01T00:00:00Z", T0),
        ("date", "2024-01-31", dt.date(2024, 1, 31)),
        ("date", "2024-01-31T23:30:00-05:00", dt.date(2024, 2, 1)),
        ("date(America/New_York)", "2024-01-31T23:30:00-05:00", dt.date(2024, 1, 31)),
        ("date", T0, dt.date(2024, 1, 1)),
        ("json", '{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}),
        ("json", {"already": "parsed"}, {"already": "parsed"}),
    ],
)
def test_cast_converts(spec, value, expected):
    [out] = CastStep({"f": spec}).process([{"f": value, "other": "kept"}])
    assert out == {"f": expected, "other": "kept"}
    assert type(out["f"]) is type(expected)


@pytest.mark.parametrize(
    "spec, value, message",
    [
        ("int", "12a", r"cast\.f: cannot cast str '12a' to int"),
        ("int", 3.5, "not a whole number"),
        ("int", T0, "cannot cast datetime"),
        ("float", "abc", "cannot cast str 'abc' to float"),
        ("decimal", "nan", "cannot cast"),
        ("decimal", float("inf"), "cannot cast"),
        ("decimal(4,2)", "123.4", "more than 2 digits before the point"),
        ("bool", "maybe", "use true/false"),
        ("bool", 2, "use true/false"),
        ("datetime", "2024-01-01T00:00:00", "has no time zone"),
        ("datetime", dt.datetime(2024, 1, 1), r"naive; say its zone"),
        ("datetime", "yesterday", "ISO-8601"),
        ("date", "31/01/2024", "ISO-8601"),
        ("json", "{not json", "invalid JSON"),
        ("str", b"\xff", "not UTF-8"),
    ],
)
def test_cast_failures_raise_for_the_dead_letter(spec, value, message):
    with pytest.raises(ValueError, match=message):
        CastStep({"f": spec}).process([{"f": value}])


def test_cast_keeps_nulls_and_missing_fields():
    step = CastStep({"a": "int", "b": "datetime"})
    assert step.process([{"a": None}, {"c": 1}]) == [{"a": None}, {"c": 1}]


# -- flatten -------------------------------------------------------------------------------------
def test_flatten_nested_objects():
    rec = {"id": 1, "user": {"name": "a", "geo": {"lat": 1.5, "tags": [1]}}, "empty": {}, "list": [{"x": 1}]}
    assert FlattenStep().process([rec]) == [
        {"id": 1, "user.name": "a", "user.geo.lat": 1.5, "user.geo.tags": [1], "empty": {}, "list": [{"x": 1}]}
    ]
    assert FlattenStep(separator="__", max_depth=1).process([rec])[0]["user__geo"] == {"lat": 1.5, "tags": [1]}
    assert FlattenStep(fields=["user"]).process([{"user": {"a": 1}, "meta": {"b": 2}}]) == [{"user.a": 1, "meta": {"b": 2}}]
    assert FlattenStep.from_config("_").process([{"a": {"b": 1}}]) == [{"a_b": 1}]
    assert FlattenStep.from_config(None).separator == "."


def test_flatten_refuses_to_overwrite_a_key():
    with pytest.raises(ValueError, match="key 'a.b' would appear twice"):
        FlattenStep().process([{"a": {"b": 1}, "a.b": 2}])
    with pytest.raises(ValueError, match="key 'a.b' would appear twice"):
        FlattenStep().process([{"a.b": 2, "a": {"b": 1}}])


# -- explode -------------------------------------------------------------------------------------
def test_explode_one_record_per_element():
    recs = [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}, {"id": 3, "tags": None}, {"id": 4}]
    assert ExplodeStep("tags").process(recs) == [{"id": 1, "tags": "a"}, {"id": 1, "tags": "b"}]
    step = ExplodeStep.from_config({"field": "tags", "index": "pos", "keep_empty": True})
    assert step.process(recs) == [
        {"id": 1, "tags": "a", "pos": 0},
        {"id": 1, "tags": "b", "pos": 1},
        {"id": 2, "tags": None, "pos": None},
        {"id": 3, "tags": None, "pos": None},
        {"id": 4, "tags": None, "pos": None},
    ]


def test_explode_rejects_a_value_that_is_not_a_list():
    with pytest.raises(TypeError, match="field 'tags' is a str, not a list"):
        ExplodeStep("tags").process([{"tags": "a,b"}])


# -- html_to_text ----------------------------------------------------------------------------------
def test_html_to_text():
    markup = (
        "<html><head><title>T</title><style>p {color: red}</style></head><body>"
        "<h1>Big&nbsp;news</h1><p>AT&amp;T buys\n <b>everything</b> &lt;again&gt;</p>"
        "<ul><li>one</li><li>two</li></ul><script>alert(1)</script>5 < 6<br>end</body></html>"
    )
    assert html_to_text(markup) == "Big news\nAT&T buys everything <again>\none\ntwo\n5 < 6\nend"
    assert html_to_text("plain text, no markup") == "plain text, no markup"
    step = HtmlToTextStep(["summary", "body"])
    assert step.process([{"summary": "<p>Hi <i>there</i></p>", "body": None, "id": 1}]) == [
        {"summary": "Hi there", "body": None, "id": 1}
    ]
    with pytest.raises(TypeError, match="field 'summary' is a int, not text"):
        step.process([{"summary": 5}])


# -- dedupe (in memory; the Beam transform is tested in the integration tests) ---------------------
def test_dedupe_keeps_the_latest_by_cursor():
    recs = [
        {"id": 1, "v": "old", "ts": T0},
        {"id": 1, "v": "new", "ts": T0 + dt.timedelta(seconds=1)},
        {"id": 2, "v": "only", "ts": None},
        {"id": 1, "v": "older", "ts": T0 - dt.timedelta(days=1)},
        {"id": 2, "v": "dated", "ts": T0},
    ]
    out = DedupeStep(["id"], "ts").process(recs)
    assert sorted((r["id"], r["v"]) for r in out) == [(1, "new"), (2, "dated")]


def test_dedupe_key_values_that_are_equal_are_one_key():
    recs = [
        {"k": Decimal("2.00"), "ts": 1},
        {"k": 2, "ts": 2},
        {"k": dt.datetime(2024, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))), "ts": 1},
        {"k": T0, "ts": 3},
    ]
    out = DedupeStep(["k"], "ts").process(recs)
    assert sorted(r["ts"] for r in out) == [2, 3]


def test_dedupe_ties_are_deterministic():
    a, b = {"id": 1, "ts": 5, "v": "a"}, {"id": 1, "ts": 5, "v": "b"}
    assert DedupeStep(["id"], "ts").process([a, b]) == DedupeStep(["id"], "ts").process([b, a])


def test_dedupe_cursor_comes_from_the_pipeline():
    step = build_step(StepSpec(1, "dedupe", {"key": ["id"]}), context=StepContext(cursor_field="updated_at", batch_size=7))
    assert isinstance(step, DedupeStep) and step.cursor == "updated_at" and step.batch_size == 7
    step = build_step(StepSpec(1, "dedupe", {"key": "id", "cursor": "seen"}), context=StepContext(cursor_field="updated_at"))
    assert step.key == ["id"] and step.cursor == "seen"
    with pytest.raises(ConfigError, match="no cursor to pick the latest record by"):
        DedupeStep(["id"]).process([{"id": 1}])


# -- python ----------------------------------------------------------------------------------------
def double_or_drop(record):
    if record["id"] == 2:
        return None
    if record["id"] == 3:
        return [record, {**record, "copy": True}]
    return {**record, "doubled": record["id"] * 2}


class Upper(TransformationStep):
    name = "upper"

    def process(self, records):
        return [{**r, "status": r["status"].upper()} for r in records]


def test_python_step_function_and_class():
    out = PythonStep(f"{__name__}:double_or_drop").process(orders())
    assert [(r["id"], r.get("doubled"), r.get("copy")) for r in out] == [(1, 2, None), (3, None, None), (3, None, True)]
    assert [r["status"] for r in PythonStep(f"{__name__}:Upper").process(orders())] == ["PAID", "VOID", "PAID"]


# -- options and YAML validation -------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, config, problem",
    [
        (FilterStep, "amount >", "invalid Python expression 'amount >'"),
        (FilterStep, 5, "must be a non-empty Python expression"),
        (MapStep, {"a": "1 +", "b": "ok(", "c": "1"}, "a: invalid Python expression"),
        (MapStep, ["x"], "give a mapping of field: expression"),
        (SelectStep, [], "give a list of field names"),
        (DropStep, {"a": 1}, "give a list of field names"),
        (RenameStep, {"a": 1}, "give a mapping of old_name: new_name"),
        (CastStep, {"a": "integr"}, "a: unknown type 'integr' (did you mean 'int'?); known: int, float, decimal"),
        (CastStep, {"a": "decimal(2,5)"}, "a: decimal takes (precision, scale)"),
        (CastStep, {"a": "datetime(Mars/Base)"}, "a: unknown time zone 'Mars/Base'"),
        (CastStep, {"a": "int(3)"}, "a: int takes no arguments"),
        (CastStep, "int", "give a mapping of field: type"),
        (FlattenStep, {"seperator": "_"}, "seperator: unknown option (did you mean 'separator'?)"),
        (FlattenStep, {"max_depth": 0}, "max_depth: must be a whole number >= 1"),
        (ExplodeStep, {"fields": "tags"}, "fields: unknown option (did you mean 'field'?)"),
        (ExplodeStep, {"field": "tags", "keep_empty": "sometimes"}, "keep_empty: must be true or false"),
        (ExplodeStep, 3, "give a field name"),
        (HtmlToTextStep, None, "give a list of field names"),
        (DedupeStep, {"keys": ["id"]}, "keys: unknown option (did you mean 'key'?)"),
        (DedupeStep, {"cursor": "ts"}, "key: required"),
        (DedupeStep, {"key": []}, "key: give a list of field names"),
        (PythonStep, "nomodule_xyz:f", "cannot import 'nomodule_xyz'"),
        (PythonStep, f"{__name__}:missing", "has no 'missing'"),
        (PythonStep, "no_colon", "give 'module:callable'"),
    ],
)
def test_check_config_reports_problems(cls, config, problem):
    problems = cls.check_config(config)
    assert any(problem in p for p in problems), problems


def test_map_reports_every_bad_expression_at_once():
    problems = MapStep.check_config({"a": "1 +", "b": "ok(", "c": "1"})
    assert len(problems) == 2 and problems[0].startswith("a: ") and problems[1].startswith("b: ")


def test_valid_configs_have_no_problems():
    for cls, config in [
        (FilterStep, "a > 1"), (MapStep, {"a": "1"}), (SelectStep, ["a"]), (DropStep, "a"), (RenameStep, {"a": "b"}),
        (CastStep, {"a": "decimal(12,2)", "b": "datetime(UTC)", "c": "json", "d": "string"}),
        (FlattenStep, None), (FlattenStep, {"separator": "_", "fields": ["a"], "max_depth": 2}),
        (ExplodeStep, "tags"), (HtmlToTextStep, ["summary"]), (DedupeStep, {"key": ["id"], "cursor": "ts"}),
        (DedupeStep, ["id"]), (PythonStep, f"{__name__}:double_or_drop"),
    ]:
        assert cls.check_config(config) == [], (cls, config)


def _pipeline(steps):
    return {
        "id": "p",
        "source": {"type": "tests.integration.synthetic:SyntheticConnector"},
        "sink": {"type": "jsonl", "path": "/tmp/out"},
        "steps": steps,
    }


def test_yaml_step_errors_name_index_and_step_all_at_once():
    with pytest.raises(ConfigError) as info:
        parse_pipeline(_pipeline([
            {"filter": "amount > 100"},
            {"filter": "amount >"},
            {"fliter": "x"},
            {"cast": {"amount": "decimall"}},
            {"dedupe": {"keys": ["id"]}},
            {"map": {"a": "1"}, "on_error": "explode"},
            {"select": ["a"], "drop": ["b"]},
        ]))
    problems = info.value.problems
    assert any(p.startswith("steps[2] (filter): invalid Python expression 'amount >'") for p in problems), problems
    assert any(
        p.startswith("steps[3] (fliter): unknown step 'fliter' (did you mean 'filter'?); known:") for p in problems
    ), problems
    assert "steps[4] (cast): amount: unknown type 'decimall' (did you mean 'decimal'?); known: int, float, decimal, str, bool, datetime, date, json" in problems
    assert any(p.startswith("steps[5] (dedupe): keys: unknown option (did you mean 'key'?)") for p in problems), problems
    assert any(p.startswith("steps[6].on_error: must be dead_letter or fail") for p in problems), problems
    assert any(p.startswith("steps[7]: one step per list item") for p in problems), problems
    assert not any(p.startswith("steps[1]") for p in problems)


def test_yaml_steps_parse_with_on_error():
    spec = parse_pipeline(_pipeline([
        {"filter": "value > 1", "on_error": "fail"}, {"cast": {"value": "decimal"}}, {"flatten": None}, "flatten",
        {"explode": "tags"}, {"html_to_text": ["summary"]}, {"dedupe": {"key": ["id"]}},
    ]))
    assert [(s.index, s.name, s.on_error) for s in spec.steps][:2] == [(1, "filter", "fail"), (2, "cast", "dead_letter")]
    assert [s.label for s in spec.steps][-1] == "7: dedupe"
