"""JSON encoding of native record values without loss: decimals, aware datetimes, bytes, durations."""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import ipaddress
import json
import uuid
import zoneinfo

import pytest

from osmosis_beam.core.encoding import dumps, format_timedelta, json_default
from osmosis_beam.core.secrets import Secret

UTC = dt.timezone.utc
D = decimal.Decimal


@pytest.mark.parametrize(
    "value, text",
    [
        (D("0.10"), "0.10"),  # trailing zeros (the scale) survive
        (D("12345678901234567890.123456789012345678901"), "12345678901234567890.123456789012345678901"),
        (D("-0.000000000000000000001"), "-1E-21"),
        (D("1E+2"), "1E+2"),
        (D("-0"), "-0"),
    ],
)
def test_decimals_are_exact_strings(value, text):
    encoded = dumps({"amount": value})
    assert encoded == json.dumps({"amount": text}, separators=(",", ":"))
    assert D(json.loads(encoded)["amount"]) == value
    assert D(json.loads(encoded)["amount"]).as_tuple() == value.as_tuple()  # same digits and exponent


def test_decimal_precision_beyond_float_is_kept():
    value = D("0.1") + D("0.2")
    assert json.loads(dumps([value])) == ["0.3"]
    assert json.loads(dumps([0.1 + 0.2])) == [0.30000000000000004]  # a float stays a JSON number


def test_aware_datetimes_carry_their_offset():
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    record = {
        "utc": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "micro": dt.datetime(2024, 1, 1, 0, 0, 0, 123, tzinfo=UTC),
        "berlin_summer": dt.datetime(2024, 7, 1, 12, tzinfo=berlin),
        "fixed": dt.datetime(2024, 1, 1, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    }
    out = json.loads(dumps(record))
    assert out == {
        "utc": "2024-01-01T00:00:00+00:00",
        "micro": "2024-01-01T00:00:00.000123+00:00",
        "berlin_summer": "2024-07-01T12:00:00+02:00",
        "fixed": "2024-01-01T05:30:00+05:30",
    }
    for key, text in out.items():  # each parses back to the same instant
        assert dt.datetime.fromisoformat(text) == record[key]


def test_dates_and_times():
    assert json.loads(dumps({"d": dt.date(2024, 2, 29), "t": dt.time(23, 59, 1, 5)})) == {
        "d": "2024-02-29",
        "t": "23:59:01.000005",
    }


def test_bytes_are_base64():
    raw = bytes(range(256))
    out = json.loads(dumps({"b": raw, "ba": bytearray(b"\x00\xff"), "mv": memoryview(b"hi")}))
    assert base64.b64decode(out["b"]) == raw
    assert out["ba"] == "AP8=" and out["mv"] == "aGk="


@pytest.mark.parametrize(
    "value, text",
    [
        (dt.timedelta(0), "PT0S"),
        (dt.timedelta(days=1), "P1D"),
        (dt.timedelta(days=2, seconds=3), "P2DT3S"),
        (dt.timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=500), "P1DT2H3M4.5S"),
        (dt.timedelta(hours=1, microseconds=5), "PT1H0.000005S"),
        (dt.timedelta(minutes=90), "PT1H30M"),
        (dt.timedelta(seconds=-1), "-PT1S"),
        (dt.timedelta(days=-1, seconds=1), "-PT23H59M59S"),
        (dt.timedelta(microseconds=-1), "-PT0.000001S"),
    ],
)
def test_timedeltas_are_iso_8601_durations(value, text):
    assert format_timedelta(value) == text
    assert json.loads(dumps({"d": value})) == {"d": text}


def test_other_scalars_and_containers():
    class Color(enum.Enum):
        RED = "red"

    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    out = json.loads(
        dumps({"id": uid, "ip": ipaddress.ip_address("10.0.0.1"), "net": ipaddress.ip_network("10.0.0.0/8"),
               "color": Color.RED, "tuple": (1, D("2.5")), "set": {3}, "nested": [{"at": dt.date(2024, 1, 1)}]})
    )
    assert out == {"id": str(uid), "ip": "10.0.0.1", "net": "10.0.0.0/8", "color": "red", "tuple": [1, "2.5"],
                   "set": [3], "nested": [{"at": "2024-01-01"}]}


def test_output_is_compact_one_line_utf8_text():
    text = dumps({"title": "Grüße\nzweite Zeile", "emoji": "🚀", "n": None, "ok": True})
    assert text == '{"title":"Grüße\\nzweite Zeile","emoji":"🚀","n":null,"ok":true}'
    assert "\n" not in text


def test_secrets_never_reach_output():
    assert json.loads(dumps({"password": Secret("hunter2")})) == {"password": "***"}


def test_nan_and_unknown_types_are_refused():
    with pytest.raises(ValueError):
        dumps({"x": float("nan")})
    with pytest.raises(TypeError, match="cannot encode object as JSON"):
        dumps({"x": object()})
    with pytest.raises(TypeError):
        json_default(complex(1, 2))
