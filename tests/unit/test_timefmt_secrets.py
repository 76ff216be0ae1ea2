"""Time values (UTC-aware datetimes, epoch microseconds, ISO text, durations) and secrets that never print."""
from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import pickle
import zoneinfo

import pytest

from osmosis_beam.core.secrets import (
    REDACTED,
    Secret,
    is_secret_name,
    redact_text,
    redact_url,
    reveal,
)
from osmosis_beam.core.timefmt import (
    MAX_MICROS,
    MIN_MICROS,
    UTC,
    format_duration,
    format_timestamp,
    from_micros,
    parse_duration,
    parse_timestamp,
    to_micros,
    utcnow,
)

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


# -- epoch microseconds ---------------------------------------------------------------------------------------------
def test_to_micros_known_values():
    assert to_micros(dt.datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_micros(dt.datetime(2024, 1, 1, tzinfo=UTC)) == 1704067200000000
    assert to_micros(dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == 1704067200000001
    assert to_micros(dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1
    # The offset counts: midnight in Berlin (winter) is 23:00 UTC the day before.
    assert to_micros(dt.datetime(2024, 1, 1, tzinfo=BERLIN)) == 1704067200000000 - 3600_000000


def test_micros_round_trip_is_exact_over_the_whole_range():
    for micros in (MIN_MICROS, -62135596800_000000 + 1, -1, 0, 1, 1704067200123456, MAX_MICROS):
        value = from_micros(micros)
        assert value.tzinfo is UTC
        assert to_micros(value) == micros
    assert from_micros(MIN_MICROS) == dt.datetime(1, 1, 1, tzinfo=UTC)
    assert from_micros(MAX_MICROS) == dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="naive timestamp 2024-01-01T00:00:00: give it a time zone"):
        to_micros(dt.datetime(2024, 1, 1))


def test_utcnow_is_aware_utc():
    now = utcnow()
    assert now.utcoffset() == dt.timedelta(0)
    assert abs(now - dt.datetime.now(UTC)) < dt.timedelta(seconds=5)


# -- ISO-8601 text --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-01-01T00:00:00Z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01t00:00:00z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T02:00:00+02:00", dt.datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01 00:00:00.123456-05:30", dt.datetime(2024, 1, 1, 5, 30, 0, 123456, tzinfo=UTC)),
        ("  2024-06-30T23:59:59.5Z ", dt.datetime(2024, 6, 30, 23, 59, 59, 500000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_gives_utc(text, expected):
    value = parse_timestamp(text)
    assert value == expected
    assert value.tzinfo is UTC


def test_parse_timestamp_rejects_naive_text_unless_the_zone_is_declared():
    with pytest.raises(ValueError, match="has no time zone: add one"):
        parse_timestamp("2024-07-01T12:00:00")
    # Summer in Berlin is UTC+2.
    assert parse_timestamp("2024-07-01T12:00:00", default_tz=BERLIN) == dt.datetime(2024, 7, 1, 10, tzinfo=UTC)
    assert parse_timestamp(dt.datetime(2024, 1, 1, 12), default_tz=BERLIN) == dt.datetime(2024, 1, 1, 11, tzinfo=UTC)
    assert parse_timestamp(dt.date(2024, 1, 1), default_tz=UTC) == dt.datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"timestamp '2024-01-01' has no time zone"):
        parse_timestamp(dt.date(2024, 1, 1))


def test_parse_timestamp_converts_aware_datetimes_and_rejects_junk():
    assert parse_timestamp(dt.datetime(2024, 1, 1, 1, tzinfo=BERLIN)) == dt.datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"invalid timestamp 'last tuesday': use ISO-8601 like 2024-01-01T00:00:00Z"):
        parse_timestamp("last tuesday")


def test_format_timestamp_always_carries_the_utc_offset():
    assert format_timestamp(dt.datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00+00:00"
    assert format_timestamp(dt.datetime(2024, 7, 1, 12, 0, 0, 5, tzinfo=BERLIN)) == "2024-07-01T10:00:00.000005+00:00"
    assert format_timestamp(None) is None
    value = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_timestamp(format_timestamp(value)) == value


# -- durations -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("250ms", 0.25), ("1.5h", 5400),
     ("0s", 0), ("45", 45), (" 5 m ", 300), (12, 12), (0.5, 0.5)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


def test_parse_duration_passes_timedeltas_through():
    assert parse_duration(dt.timedelta(minutes=3)) == dt.timedelta(minutes=3)


@pytest.mark.parametrize("value", ["", "soon", "-5s", "5 minutes", "1h30m", "10M", "1e3s", True, -1])
def test_parse_duration_rejects_bad_values(value):
    with pytest.raises(ValueError, match=f"invalid duration {value!r}"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["99999999999999d", float("inf"), float("nan"), 10**20])
def test_parse_duration_out_of_range_is_a_value_error_not_a_crash(value):
    with pytest.raises(ValueError, match="out of range"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value, text",
    [(dt.timedelta(0), "0s"), (dt.timedelta(seconds=90), "90s"), (dt.timedelta(hours=1), "1h"),
     (dt.timedelta(minutes=15), "15m"), (dt.timedelta(days=2), "2d"), (dt.timedelta(weeks=3), "3w"),
     (dt.timedelta(seconds=1.5), "1.5s"), (dt.timedelta(microseconds=1), "0.000001s"),
     (dt.timedelta(milliseconds=250), "0.25s")],
)
def test_format_duration_is_short_exact_and_parses_back(value, text):
    assert format_duration(value) == text
    assert parse_duration(text) == value


# -- Secret --------------------------------------------------------------------------------------------------------------
def test_secret_never_prints():
    secret = Secret("hunter2")
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>20}", "%s" % secret, "%r" % (secret,),
             repr([secret]), repr({"password": secret}), str((secret,))]
    assert all("hunter2" not in text for text in shown), shown
    assert repr(secret) == str(secret) == REDACTED == "***"


def test_secret_not_in_logs(caplog):
    log = logging.getLogger("osmosis-test")
    with caplog.at_level(logging.INFO, logger="osmosis-test"):
        log.info("connecting with %s and %r", Secret("hunter2"), {"pw": Secret("s3cr3t")})
    assert "hunter2" not in caplog.text and "s3cr3t" not in caplog.text
    assert "connecting with *** and {'pw': ***}" in caplog.text


def test_secret_does_not_leak_through_json():
    with pytest.raises(TypeError):
        json.dumps({"password": Secret("hunter2")})


def test_secret_reveal_equality_and_truth():
    secret = Secret("hunter2")
    assert secret.reveal() == "hunter2"
    assert reveal(secret) == "hunter2" and reveal("plain") == "plain" and reveal(None) is None
    assert Secret(secret).reveal() == "hunter2"  # wrapping twice does not nest
    assert secret == Secret("hunter2") and secret != Secret("other") and secret != "hunter2"
    assert len({secret, Secret("hunter2")}) == 1
    assert bool(secret) and not Secret("") and not Secret(None)


def test_secret_pickles_and_copies_with_its_value():
    secret = Secret({"user": "app", "password": "hunter2"})
    for clone in (pickle.loads(pickle.dumps(secret)), copy.deepcopy(secret), copy.copy(secret)):
        assert isinstance(clone, Secret)
        assert clone.reveal() == {"user": "app", "password": "hunter2"}
        assert repr(clone) == REDACTED


@pytest.mark.parametrize(
    "name", ["password", "db_password", "PASSWD", "api_key", "apiKey", "x-api-key", "client_secret", "access_token",
             "private_key", "credentials", "Authorization", "Proxy-Authorization", "cookie"],
)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["url", "author", "user", "published", "path", "host", "cursor_field", "", None])
def test_not_secret_names(name):
    assert not is_secret_name(name)


# -- redaction -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("postgresql://app:hunter2@db:5432/prod", "postgresql://app:***@db:5432/prod"),
        ("could not connect to mongodb://u:pw@h1,h2/db?replicaSet=rs", "could not connect to mongodb://u:***@h1,h2/db?replicaSet=rs"),
        ("two: http://a:x1@h1/ and https://b:x2@h2/", "two: http://a:***@h1/ and https://b:***@h2/"),
        ("postgresql://app:p@ss@db/prod", "postgresql://app:***@db/prod"),  # an unescaped '@' leaks nothing
        ("postgresql://:only@db/prod", "postgresql://:***@db/prod"),
        ("host=db user=app password=hunter2 dbname=prod", "host=db user=app password=*** dbname=prod"),
        ("password = 'two words' sslmode=require", "password = *** sslmode=require"),
        ("db_password=hunter2;next", "db_password=***;next"),
        ("https://x.example/feed?access_token=abc123&page=2", "https://x.example/feed?access_token=***&page=2"),
        ("https://x.example/feed?client_secret=abc&apikey=k1", "https://x.example/feed?client_secret=***&apikey=***"),
        ("PWD=hunter2", "PWD=***"),
        # Left alone: no password, a port, a pure ${ENV} reference (names a secret, holds none).
        ("postgresql://app@db/prod", "postgresql://app@db/prod"),
        ("http://127.0.0.1:8000/feed.xml", "http://127.0.0.1:8000/feed.xml"),
        ("postgresql://app:${DB_PASSWORD}@db/prod", "postgresql://app:${DB_PASSWORD}@db/prod"),
        ("password=${DB_PASSWORD} host=db", "password=${DB_PASSWORD} host=db"),
        ("tokens_seen=5 user@example.com", "tokens_seen=5 user@example.com"),
    ],
)
def test_redact_url(text, expected):
    assert redact_url(text) == expected


def test_redact_url_still_redacts_an_env_default():
    assert redact_url("postgresql://app:${PW:-hunter2}@db/prod") == "postgresql://app:***@db/prod"


def test_redact_text_replaces_known_secrets_and_url_passwords():
    text = "auth failed for token s3cr3t-t0ken at postgresql://app:hunter2@db/prod (key s3cr3t-t0ken)"
    assert redact_text(text, [Secret("s3cr3t-t0ken")]) == "auth failed for token *** at postgresql://app:***@db/prod (key ***)"


def test_redact_text_replaces_the_longest_secret_first():
    # Replacing "abcd" first would leave "***efgh" and show the tail of the longer secret.
    assert redact_text("k=abcdefgh", ["abcd", "abcdefgh"]) == "k=***"
    assert redact_text("k=abcdefgh", ["abcdefgh", "abcd"]) == "k=***"


def test_redact_text_edge_cases():
    assert redact_text(None, ["x"]) is None
    assert redact_text("pin 48213 ok", [48213]) == "pin *** ok"
    # Very short values are not replaced: they would shred ordinary words.
    assert redact_text("an error at 12", ["an", None, "12"]) == "an error at 12"
    assert redact_text(ValueError("bad hunter2"), ["hunter2"]) == "bad ***"
