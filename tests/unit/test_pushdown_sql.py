"""The SQL a filter or cast step becomes on the zero-decode path: values bound, never spliced; refusals say why.

The equality of both paths' output is proven against a real server in tests/integration/test_pushdown.py.
"""
from __future__ import annotations

import datetime as dt
import decimal

import pytest

from osmosis_beam.io.postgres.pushdown import Ref, Unsupported, translate_cast, translate_filter

FIELDS = {
    "n": Ref('_s."n"', 1700, True, "n"),
    "k": Ref('_s."k"', 23, False, "k"),
    "t": Ref('_s."t"', 25, True, "t"),
    "f": Ref('_s."f"', 701, False, "f"),
    "at": Ref('_s."at"', 1184, True, "at"),
    "gone": Ref("NULL", 0, True),
}


def test_literals_are_bound_parameters_never_text():
    params: dict = {}
    nasty = "x'); DROP TABLE orders; --"
    keep, unsure = translate_filter(f"t == {nasty!r} or k in [1, 2]", FIELDS, params)
    assert nasty not in keep and "DROP" not in keep
    assert list(params.values()) == [nasty, [decimal.Decimal(1), decimal.Decimal(2)]]
    assert "%(pd0)s::text" in keep and "%(pd1)s::numeric[]" in keep
    assert unsure == []  # equality with None is exact (IS NOT DISTINCT FROM); k is NOT NULL


def test_an_ordering_comparison_on_a_nullable_field_sends_its_null_rows_typed():
    params: dict = {}
    keep, unsure = translate_filter("n > 1", FIELDS, params)
    assert '_s."n" IS NULL' in unsure and "_s.\"n\" = 'NaN'::numeric" in unsure
    keep, unsure = translate_filter("t is not None and t > 'a'", FIELDS, params)
    assert unsure == [] and 'COLLATE "C"' in keep


def test_constant_helper_calls_are_evaluated_once_and_bound():
    params: dict = {}
    translate_filter("at >= timestamp('2024-01-01T00:00:00+02:00')", FIELDS, params)
    assert params == {"pd0": dt.datetime(2023, 12, 31, 22, tzinfo=dt.timezone.utc)}


@pytest.mark.parametrize("expression, why", [
    ("k * 2 > 1", "arithmetic"),
    ("t.lower() == 'a'", "no exact SQL twin"),
    ("k > 'a'", "between int and str"),
    ("f > k", "float field compared"),
    ("f > 9007199254740993", "cannot hold exactly"),
    ("missing > 1", "'missing' is not a field"),
    ("at > datetime(2024, 1, 1)", "naive datetime"),
    ("n == None", "is None"),
    ("record['k']", "Subscript"),
    ("timestamp(t) > at", "not literals"),
    ("k > float('nan')", "no exact SQL twin"),
])
def test_what_has_no_exact_sql_twin_is_refused_with_the_reason(expression, why):
    with pytest.raises(Unsupported) as info:
        translate_filter(expression, FIELDS, {})
    assert why in str(info.value)


def test_a_field_a_select_made_null_is_a_null_constant():
    keep, unsure = translate_filter("gone is None", FIELDS, {})
    assert (keep, unsure) == ("(true)", [])


def test_casts_that_can_fail_flag_their_rows():
    ref, unsure = translate_cast("n", "decimal(5,2)", FIELDS["n"])
    assert ref.sql == 'round((_s."n")::numeric, 2)' and "1e3::numeric" in unsure[0]
    ref, unsure = translate_cast("n", "int", FIELDS["n"])
    assert ref.sql == 'trunc(_s."n")' and "trunc" in unsure[0]
    assert translate_cast("k", "string", FIELDS["k"]) == (Ref('(_s."k")::text', 25, False), [])
    with pytest.raises(Unsupported, match="not pushed"):
        translate_cast("f", "str", FIELDS["f"])


def test_text_ordering_and_lengths_need_a_utf8_database():
    for expression in ("t > 'a'", "len(t) > 1", "t.startswith('a')"):
        with pytest.raises(Unsupported, match="UTF8"):
            translate_filter(expression, FIELDS, {}, utf8=False)
    assert translate_filter("t == 'a'", FIELDS, {}, utf8=False)[1] == []  # equality is exact under "C" anyway
