"""The PostgreSQL connector against a real server: windows, cursor types, values, splits, safety, errors."""
from __future__ import annotations

import datetime as dt
import decimal
import pickle
import time
import uuid

import psycopg2
import pytest

from osmosis_beam.core.errors import (
    ConfigError,
    FatalConnectorError,
    RetriableConnectorError,
)
from osmosis_beam.core.records import DeadLetter
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.postgres.source import PostgresConnector, parse_table_name
from osmosis_beam.registry import default_registry
from tests.integration.pg_support import (  # noqa: F401  (fixtures)
    T0,
    execute,
    fetch,
    flatten,
    pg_dsn,
    pg_module_database,
    read_all,
    read_through_beam,
    source,
    utc,
)

HOSTILE = '"; DROP TABLE victim; --'


def make_orders(dsn: str, rows: int = 0) -> None:
    execute(
        dsn,
        "CREATE TABLE orders (id bigserial PRIMARY KEY, updated_at timestamptz NOT NULL, amount numeric(12,2), note text)",
        "CREATE INDEX ON orders (updated_at)",
    )
    if rows:
        execute(
            dsn,
            "INSERT INTO orders (updated_at, amount, note) "
            f"SELECT %s::timestamptz + g * interval '1 minute', g / 100.0, 'n' || g FROM generate_series(1, {rows}) g",
            args=(T0,),
        )


def ids(records) -> list[int]:
    return [r["id"] for r in records]


# -- registration and options -----------------------------------------------------------------------------
def test_registered_as_postgres():
    assert default_registry().connector("postgres") is PostgresConnector


def test_options_are_checked_without_a_server():
    with pytest.raises(ConfigError) as err:
        PostgresConnector({"dsn": "postgresql://u@h/db"})
    assert "source.table: required" in str(err.value)
    with pytest.raises(ConfigError, match="give table or query, not both"):
        PostgresConnector({"dsn": "postgresql://u@h/db", "table": "t", "query": "SELECT 1"})
    with pytest.raises(ConfigError, match="unknown time zone"):
        PostgresConnector({"dsn": "postgresql://u@h/db", "table": "t", "timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="not a valid PostgreSQL DSN"):
        PostgresConnector({"dsn": "host=h port", "table": "t"})


def test_the_dsn_is_secret_everywhere(pg_dsn):
    orders = source(pg_dsn, table="orders")
    password = psycopg2.extensions.parse_dsn(pg_dsn)["password"]
    assert password not in repr(orders.config) and password not in str(orders.display())
    assert "@127.0.0.1" in orders.display()["dsn"]


# -- windows --------------------------------------------------------------------------------------------------
def test_reads_the_half_open_window_in_cursor_order(pg_dsn):
    make_orders(pg_dsn, rows=10)
    records = read_all(source(pg_dsn, table="orders"), utc(2024, 1, 1, 0, 3), utc(2024, 1, 1, 0, 7))
    assert ids(records) == [3, 4, 5, 6]
    assert [r["updated_at"] for r in records] == sorted(r["updated_at"] for r in records)


def test_rows_that_tie_at_the_window_boundary_fall_into_the_next_window(pg_dsn):
    make_orders(pg_dsn)
    boundary = utc(2024, 1, 1, 12)
    execute(
        pg_dsn,
        "INSERT INTO orders (updated_at, note) VALUES (%s - interval '1 microsecond', 'before'), (%s, 'tie a'), "
        "(%s, 'tie b'), (%s, 'tie c'), (%s + interval '1 microsecond', 'after')",
        args=(boundary,) * 5,
    )
    orders = source(pg_dsn, table="orders")
    first = read_all(orders, T0, boundary)
    second = read_all(orders, boundary, utc(2024, 1, 2))
    assert [r["note"] for r in first] == ["before"]
    assert sorted(r["note"] for r in second) == ["after", "tie a", "tie b", "tie c"]
    assert len({r["id"] for r in first + second}) == 5  # every row exactly once


def test_a_late_committing_transaction_is_caught_by_the_safety_lag(pg_dsn):
    """A row whose transaction started (and stamped it) before hi but commits after the read.

    The lag alone, with the cap at open transactions turned off (tests/faults/test_pg_late_commit.py has
    the cap, which the defaults add on top of the lag)."""
    make_orders(pg_dsn)
    orders = source(pg_dsn, table="orders", wait_for_open_transactions=False)
    lag = dt.timedelta(seconds=1)
    writer = psycopg2.connect(pg_dsn)
    try:
        with writer.cursor() as cur:  # open, uncommitted: stamped 0.5 s ago
            cur.execute("INSERT INTO orders (updated_at, note) VALUES (clock_timestamp() - interval '0.5 second', 'late')")
            cur.execute("SELECT updated_at FROM orders WHERE note = 'late'")
            stamped = cur.fetchone()[0]
        orders.connect()
        clock = orders.source_clock()
        orders.disconnect()
        assert stamped < clock

        # Without a lag the window would end at the clock: the row is invisible now and behind the next window.
        assert read_all(orders, T0, clock) == []
        # With the lag, hi lies before the row's stamp: the row belongs to the next window.
        hi_1 = clock - lag
        assert hi_1 < stamped
        assert read_all(orders, T0, hi_1) == []
        writer.commit()
    finally:
        writer.close()
    deadline = time.monotonic() + 10
    while True:  # the next run, once the server's clock has moved past the stamp plus the lag
        orders.connect()
        hi_2 = orders.source_clock() - lag
        orders.disconnect()
        if hi_2 > stamped or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [r["note"] for r in read_all(orders, hi_1, hi_2)] == ["late"]


def test_a_100k_row_window_split_into_sub_windows_delivers_every_row_exactly_once(pg_dsn):
    make_orders(pg_dsn)
    # 100,000 rows, three per cursor value (ties straddle the sub-window edges).
    execute(
        pg_dsn,
        "INSERT INTO orders (updated_at, amount) "
        "SELECT %s::timestamptz + (g / 3) * interval '7 milliseconds', g FROM generate_series(0, 99999) g",
        args=(T0,),
    )
    orders = source(pg_dsn, table="orders", fetch_size=3000)
    window = SyncWindow(T0, T0 + dt.timedelta(hours=1))
    batches, dead = read_through_beam(orders, window, splits=8, batch_size=5000)
    records = flatten(batches)
    assert dead == []
    assert len(records) == 100_000
    assert sorted(ids(records)) == list(range(1, 100_001))
    assert len(batches) >= 8  # read in sub-windows, in batches
    assert all(len(b) <= 5000 for b in batches)
    assert {type(r["amount"]) for r in records} == {decimal.Decimal}


def test_an_open_lower_bound_reads_everything_before_hi_in_parallel(pg_dsn):
    make_orders(pg_dsn, rows=1000)
    orders = source(pg_dsn, table="orders")
    window = SyncWindow(None, utc(2024, 1, 1, 10))  # rows 1..599
    orders.connect()
    low = orders.lower_bound(window)
    assert not orders.window_is_empty(window)
    orders.disconnect()
    assert low == utc(2024, 1, 1, 0, 1)
    batches, dead = read_through_beam(orders, window, splits=4, batch_size=100, split_from=low)
    assert sorted(ids(flatten(batches))) == list(range(1, 600)) and dead == []


def test_window_is_empty_probes_the_window(pg_dsn):
    make_orders(pg_dsn, rows=3)
    orders = source(pg_dsn, table="orders")
    orders.connect()
    try:
        assert orders.window_is_empty(SyncWindow(utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 2))) is False
        assert orders.window_is_empty(SyncWindow(utc(2024, 1, 1, 0, 4), utc(2024, 1, 2))) is True
        assert orders.window_is_empty(SyncWindow(None, utc(2024, 1, 1, 0, 1))) is True
        assert orders.window_is_empty(SyncWindow(None, utc(2024, 1, 1, 0, 2))) is False
    finally:
        orders.disconnect()


# -- cursor types ------------------------------------------------------------------------------------------
def test_timestamptz_cursor_is_utc_aware_whatever_the_server_zone(pg_dsn):
    make_orders(pg_dsn)
    dbname = psycopg2.extensions.parse_dsn(pg_dsn)["dbname"]
    execute(pg_dsn, f"ALTER DATABASE {dbname} SET timezone TO 'America/New_York'")
    execute(pg_dsn, "INSERT INTO orders (updated_at) VALUES ('2024-03-10 01:30:00-05')")
    orders = source(pg_dsn, table="orders")
    (record,) = read_all(orders, T0, utc(2025, 1, 1))
    assert record["updated_at"] == utc(2024, 3, 10, 6, 30)
    assert record["updated_at"].utcoffset() == dt.timedelta(0)
    orders.connect()
    clock = orders.source_clock()
    orders.disconnect()
    assert clock.utcoffset() == dt.timedelta(0)
    assert abs(clock - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)


def test_naive_timestamp_cursor_needs_a_timezone(pg_dsn):
    execute(pg_dsn, "CREATE TABLE visits (id int, seen timestamp)")
    with pytest.raises(ConfigError, match="source.timezone: cursor column 'seen' .* timestamp without time zone"):
        source(pg_dsn, cursor="seen", table="visits").connect()


def test_naive_timestamp_cursor_in_a_declared_zone_across_dst(pg_dsn):
    execute(pg_dsn, "CREATE TABLE visits (id int PRIMARY KEY, seen timestamp NOT NULL, other timestamp)")
    # Europe/Paris: summer time ends 2024-10-27 03:00 local (01:00Z); 02:30 local happens twice.
    local = {
        1: "2024-10-27 01:59:00",  # 23:59Z the day before
        2: "2024-10-27 02:30:00",  # ambiguous: PostgreSQL reads it as standard time, 01:30Z
        3: "2024-10-27 03:10:00",  # 02:10Z
        4: "2024-07-01 12:00:00",  # 10:00Z
    }
    for key, value in local.items():
        execute(pg_dsn, "INSERT INTO visits VALUES (%s, %s, %s)", args=(key, value, value))
    visits = source(pg_dsn, cursor="seen", table="visits", timezone="Europe/Paris")
    records = read_all(visits, utc(2024, 10, 26, 23), utc(2024, 10, 27, 2, 10))
    assert ids(records) == [1, 2]
    assert records[0]["seen"] == utc(2024, 10, 26, 23, 59) and records[1]["seen"] == utc(2024, 10, 27, 1, 30)
    assert records[0]["other"] == records[0]["seen"]  # every naive column is read in the declared zone
    batches, dead = read_through_beam(visits, SyncWindow(None, utc(2025, 1, 1)), splits=3)
    assert sorted(ids(flatten(batches))) == [1, 2, 3, 4] and dead == []
    schema = visits.get_schema()
    assert {f["name"]: f["type"] for f in schema["fields"]}["seen"] == "timestamp with time zone"


def test_date_cursor_counts_a_day_from_midnight_utc(pg_dsn):
    execute(pg_dsn, "CREATE TABLE daily (id int PRIMARY KEY, day date NOT NULL)",
            "INSERT INTO daily SELECT g, DATE '2024-01-01' + g - 1 FROM generate_series(1, 5) g")
    daily = source(pg_dsn, cursor="day", table="daily")
    assert ids(read_all(daily, utc(2024, 1, 2), utc(2024, 1, 4))) == [2, 3]
    assert ids(read_all(daily, utc(2024, 1, 1, 12), utc(2024, 1, 3))) == [2]  # day 1 began before lo
    assert ids(read_all(daily, utc(2024, 1, 4), utc(2024, 1, 4, 0, 0, 1))) == [4]
    assert read_all(daily, T0, utc(2024, 1, 4))[0]["day"] == dt.date(2024, 1, 1)
    batches, _ = read_through_beam(daily, SyncWindow(utc(2024, 1, 1), utc(2024, 1, 6)), splits=4)
    assert sorted(ids(flatten(batches))) == [1, 2, 3, 4, 5]
    daily.connect()
    assert daily.lower_bound(SyncWindow(None, utc(2025, 1, 1))) == utc(2024, 1, 1)
    daily.disconnect()


def test_integer_cursor_window_ends_after_the_largest_id(pg_dsn):
    execute(pg_dsn, "CREATE TABLE events (id bigserial PRIMARY KEY, kind text)")
    events = source(pg_dsn, cursor="id", table="events")
    events.connect()
    empty_clock = events.source_clock()
    assert events.window_is_empty(SyncWindow(None, empty_clock)) is True
    execute(pg_dsn, "INSERT INTO events (kind) SELECT 'k' || g FROM generate_series(1, 50) g")
    clock = events.source_clock()
    events.disconnect()
    assert clock == 51 and isinstance(clock, int)
    assert ids(read_all(events, None, clock)) == list(range(1, 51))
    assert ids(read_all(events, 10, 13)) == [10, 11, 12]
    batches, dead = read_through_beam(events, SyncWindow(empty_clock, clock), splits=5, batch_size=7)
    assert sorted(ids(flatten(batches))) == list(range(1, 51)) and dead == []
    with pytest.raises(FatalConnectorError, match="rerun with --full-refresh"):
        read_all(events, T0, utc(2024, 2, 1))


def test_unsupported_cursor_type_is_named(pg_dsn):
    execute(pg_dsn, "CREATE TABLE t (id int, label text)")
    with pytest.raises(FatalConnectorError, match="cursor column 'label' has type text"):
        source(pg_dsn, cursor="label", table="t").connect()


def test_no_cursor_reads_the_whole_table_as_one_piece(pg_dsn):
    make_orders(pg_dsn, rows=20)
    whole = source(pg_dsn, cursor=None, table="orders")
    assert whole.splittable is False
    batches, dead = read_through_beam(whole, SyncWindow(None, utc(2030, 1, 1)), splits=4)
    assert sorted(ids(flatten(batches))) == list(range(1, 21)) and dead == []


# -- values ---------------------------------------------------------------------------------------------------
def test_values_keep_their_meaning(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TYPE mood AS ENUM ('calm', 'angry')",
        """CREATE TABLE everything (
            id int PRIMARY KEY, updated_at timestamptz NOT NULL, amount numeric(20,6), ratio double precision,
            doc jsonb, docs jsonb[], plain json, tags text[], grid int[][], uid uuid, blob bytea, blobs bytea[],
            wait interval, feeling mood, feelings mood[], day date, at_naive timestamp, at_time time, flag boolean,
            big bigint, nothing text)""",
        """INSERT INTO everything VALUES (
            1, '2024-01-01 10:00:00.123456+02', 12345678901234.000001, 0.5,
            '{"a": [1, 2.5, "x"], "b": {"c": null}}', ARRAY['{"k": 1}'::jsonb], '[1, 2]', ARRAY['a', 'b,c', NULL],
            '{{1,2},{3,4}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', ARRAY['\\x01'::bytea],
            '1 day 02:03:04.5', 'angry', '{calm,angry}', '2024-02-29', '2024-01-01 10:00', '23:59:59', true,
            9007199254740993, NULL)""",
    )
    (r,) = read_all(source(pg_dsn, table="everything"), T0, utc(2025, 1, 1))
    assert r["amount"] == decimal.Decimal("12345678901234.000001") and isinstance(r["amount"], decimal.Decimal)
    assert r["ratio"] == 0.5
    assert r["updated_at"] == utc(2024, 1, 1, 8, 0, 0, 123456) and r["updated_at"].tzinfo is not None
    assert r["doc"] == {"a": [1, 2.5, "x"], "b": {"c": None}}
    assert r["docs"] == [{"k": 1}] and r["plain"] == [1, 2]
    assert r["tags"] == ["a", "b,c", None] and r["grid"] == [[1, 2], [3, 4]]
    assert r["uid"] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert r["blob"] == b"\x00\xff\x10" and type(r["blob"]) is bytes and r["blobs"] == [b"\x01"]
    assert r["wait"] == dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert r["feeling"] == "angry" and r["feelings"] == ["calm", "angry"]
    assert r["day"] == dt.date(2024, 2, 29)
    assert r["at_naive"] == dt.datetime(2024, 1, 1, 10)  # no timezone declared: stays as stored
    assert r["at_time"] == dt.time(23, 59, 59) and r["flag"] is True
    assert r["big"] == 9007199254740993 and r["nothing"] is None
    pickle.loads(pickle.dumps(r))  # records cross Beam worker boundaries


def test_a_value_python_cannot_hold_goes_to_the_dead_letters(pg_dsn):
    make_orders(pg_dsn, rows=6)
    execute(pg_dsn, "ALTER TABLE orders ADD COLUMN due date", "UPDATE orders SET due = '2024-05-01'",
            "UPDATE orders SET due = '10000-01-01' WHERE id = 4", "UPDATE orders SET due = '0044-03-15 BC' WHERE id = 5")
    items = read_all(source(pg_dsn, table="orders", fetch_size=2), T0, utc(2025, 1, 1))
    records = [i for i in items if not isinstance(i, DeadLetter)]
    dead = [i for i in items if isinstance(i, DeadLetter)]
    assert ids(records) == [1, 2, 3, 6]
    assert [d.record["id"] for d in dead] == [4, 5]
    assert "year 10000 is out of range" in dead[0].error and dead[0].record["due"] == "10000-01-01"
    batches, dead_beam = read_through_beam(source(pg_dsn, table="orders", fetch_size=2), SyncWindow(T0, utc(2025, 1, 1)))
    assert sorted(ids(flatten(batches))) == [1, 2, 3, 6] and len(dead_beam) == 2


def test_columns_option_reads_a_subset_plus_the_cursor(pg_dsn):
    make_orders(pg_dsn, rows=2)
    records = read_all(source(pg_dsn, table="orders", columns=["id", "note"]), T0, utc(2025, 1, 1))
    assert records[0] == {"id": 1, "note": "n1", "updated_at": utc(2024, 1, 1, 0, 1)}


def test_query_source(pg_dsn):
    make_orders(pg_dsn, rows=10)
    execute(pg_dsn, "CREATE TABLE customers (order_id bigint, name text)",
            "INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 10) g")
    query = (
        "SELECT o.id, o.updated_at, c.name FROM orders o JOIN customers c ON c.order_id = o.id "
        "WHERE c.name LIKE 'c%' -- a comment at the end\n;"
    )
    orders = source(pg_dsn, query=query, primary_key=["id"])
    records = read_all(orders, utc(2024, 1, 1, 0, 2), utc(2024, 1, 1, 0, 5))
    assert records == [
        {"id": i, "updated_at": utc(2024, 1, 1, 0, i), "name": f"c{i}"} for i in (2, 3, 4)
    ]
    schema = orders.get_schema()
    assert schema["primary_key"] == ["id"] and schema["table"] is None
    assert [f["name"] for f in schema["fields"]] == ["id", "updated_at", "name"]


def test_a_query_with_duplicate_column_names_is_refused(pg_dsn):
    make_orders(pg_dsn)
    with pytest.raises(ConfigError, match="more than one column named id"):
        source(pg_dsn, query="SELECT id, updated_at, id FROM orders").connect()


def test_get_schema_from_the_catalog(pg_dsn):
    execute(pg_dsn, "CREATE SCHEMA shop",
            "CREATE TABLE shop.lines (order_id int, line int, updated_at timestamptz NOT NULL, price numeric(10,2) NOT NULL, "
            "memo varchar(40), PRIMARY KEY (order_id, line))")
    schema = source(pg_dsn, table="shop.lines").get_schema()
    assert schema["fields"] == [
        {"name": "order_id", "type": "integer", "nullable": False},
        {"name": "line", "type": "integer", "nullable": False},
        {"name": "updated_at", "type": "timestamp with time zone", "nullable": False},
        {"name": "price", "type": "numeric(10,2)", "nullable": False},
        {"name": "memo", "type": "character varying(40)", "nullable": True},
    ]
    assert schema["primary_key"] == ["order_id", "line"]
    assert schema["cursor_field"] == "updated_at" and schema["cursor_type"] == "timestamptz"
    assert schema["table"] == "shop.lines"


def test_the_connector_pickles_without_its_connection(pg_dsn):
    make_orders(pg_dsn, rows=3)
    orders = source(pg_dsn, table="orders")
    orders.connect()
    copy = pickle.loads(pickle.dumps(orders))
    orders.disconnect()
    assert copy._client is None and copy.plan.kind == "timestamptz"
    assert ids(read_all(copy, T0, utc(2025, 1, 1))) == [1, 2, 3]


def test_fetch_reads_up_to_the_source_clock(pg_dsn):
    make_orders(pg_dsn, rows=5)
    assert ids(source(pg_dsn, table="orders").fetch(utc(2024, 1, 1, 0, 3))) == [3, 4, 5]


# -- hostile identifiers ------------------------------------------------------------------------------------
def victim_exists(dsn: str) -> bool:
    return fetch(dsn, "SELECT to_regclass('public.victim') IS NOT NULL")[0][0]


def test_hostile_identifiers_are_rejected_or_quoted(pg_dsn):
    execute(pg_dsn, "CREATE TABLE victim (id int)")
    make_orders(pg_dsn, rows=2)
    # A double quote that does not close is not a table name.
    with pytest.raises(ConfigError, match="is not a table name"):
        source(pg_dsn, table=HOSTILE)
    # Everything else is one identifier, quoted: the table simply does not exist.
    with pytest.raises(FatalConnectorError, match="does not exist"):
        source(pg_dsn, table="victim; DROP TABLE victim; --").connect()
    with pytest.raises(FatalConnectorError, match="column .* does not exist"):
        source(pg_dsn, table="orders", columns=["id", "note); DROP TABLE victim; --"]).connect()
    with pytest.raises(FatalConnectorError, match="column .* does not exist"):
        source(pg_dsn, cursor='updated_at" >= now(); DROP TABLE victim; --', table="orders").connect()
    with pytest.raises(ConfigError, match="unknown time zone"):
        source(pg_dsn, table="orders", timezone="UTC'; DROP TABLE victim; --")
    with pytest.raises(ConfigError, match="one statement"):
        source(pg_dsn, query="SELECT * FROM orders; DROP TABLE victim")
    with pytest.raises(ConfigError, match="unbalanced"):
        source(pg_dsn, query="SELECT * FROM orders) x; DROP TABLE victim; --")
    assert victim_exists(pg_dsn)


def test_a_table_and_columns_with_hostile_names_are_read_safely(pg_dsn):
    execute(pg_dsn, "CREATE TABLE victim (id int)")
    execute(
        pg_dsn,
        'CREATE SCHEMA "we.ird"',
        'CREATE TABLE "we.ird"."x""; DROP TABLE victim; --" ("id; DROP TABLE victim" int, "At""" timestamptz)',
        'INSERT INTO "we.ird"."x""; DROP TABLE victim; --" VALUES (1, %s)',
        args=(utc(2024, 1, 1, 1),),
    )
    name = '"we.ird"."x""; DROP TABLE victim; --"'
    assert parse_table_name(name) == ("we.ird", 'x"; DROP TABLE victim; --')
    hostile = source(pg_dsn, cursor='At"', table=name)
    assert read_all(hostile, T0, utc(2024, 1, 2)) == [{"id; DROP TABLE victim": 1, 'At"': utc(2024, 1, 1, 1)}]
    assert hostile.get_schema()["table"] == 'we.ird.x"; DROP TABLE victim; --'
    assert victim_exists(pg_dsn)


def test_names_with_percent_signs_survive_parameter_formatting(pg_dsn):
    execute(pg_dsn, 'CREATE TABLE "pct%(lo)s" ("a%s" text, "at%" timestamptz)',
            """INSERT INTO "pct%(lo)s" VALUES ('100%', '2024-01-01 01:00Z')""")
    pct = source(pg_dsn, cursor="at%", table="pct%(lo)s")
    assert read_all(pct, T0, utc(2024, 1, 2)) == [{"a%s": "100%", "at%": utc(2024, 1, 1, 1)}]
    query = source(pg_dsn, cursor=None, query="""SELECT "a%s", 'x%' AS y FROM "pct%(lo)s" WHERE "a%s" LIKE '100%'""")
    assert read_all(query, None, utc(2024, 1, 2)) == [{"a%s": "100%", "y": "x%"}]


def test_a_query_cannot_write(pg_dsn):
    execute(pg_dsn, "CREATE TABLE victim (id int)")
    execute(pg_dsn, "CREATE FUNCTION evil() RETURNS timestamptz LANGUAGE sql AS 'DELETE FROM victim; SELECT now()'")
    execute(pg_dsn, "INSERT INTO victim VALUES (1)")
    with pytest.raises(FatalConnectorError, match="read-only transaction"):
        read_all(source(pg_dsn, query="SELECT evil() AS updated_at"), T0, utc(2100, 1, 1))
    assert fetch(pg_dsn, "SELECT count(*) FROM victim")[0][0] == 1


# -- test_connection and errors -----------------------------------------------------------------------------------
def test_test_connection_describes_what_it_found(pg_dsn):
    make_orders(pg_dsn)
    text = source(pg_dsn, table="orders").test_connection()
    assert text.startswith("postgres: connected to osmosis@127.0.0.1:")
    assert "public.orders: 4 columns, cursor updated_at (timestamp with time zone)" in text
    assert psycopg2.extensions.parse_dsn(pg_dsn)["password"] not in text


@pytest.mark.parametrize(
    "change, error, message",
    [
        ("password", FatalConnectorError, "refused the password for user 'osmosis'"),
        ("database", FatalConnectorError, "database 'no_such_db' does not exist"),
        ("user", FatalConnectorError, "refused the password for user 'nobody'"),
        ("port", RetriableConnectorError, "connection refused"),
        ("host", FatalConnectorError, "unknown host 'no-such-host.invalid'"),
    ],
)
def test_wrong_connection_settings_are_named_plainly_without_the_password(pg_server, pg_dsn, change, error, message):
    import socket

    password = "S3cret-do-not-print"
    params = {"user": pg_server.user, "password": password if change == "password" else pg_server.password,
              "host": pg_server.host, "port": pg_server.port, "dbname": psycopg2.extensions.parse_dsn(pg_dsn)["dbname"]}
    if change == "database":
        params["dbname"] = "no_such_db"
    elif change == "user":
        params["user"], params["password"] = "nobody", password
    elif change == "port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            params["port"] = s.getsockname()[1]
    elif change == "host":
        params["host"] = "no-such-host.invalid"
    dsn = f"postgresql://{params['user']}:{params['password']}@{params['host']}:{params['port']}/{params['dbname']}"
    with pytest.raises(error) as err:
        source(dsn, table="orders").test_connection()
    assert message in str(err.value)
    assert password not in str(err.value) and pg_server.password not in str(err.value)


def test_missing_table_and_cursor_column_are_named_with_a_suggestion(pg_dsn):
    make_orders(pg_dsn)
    with pytest.raises(FatalConnectorError, match=r"table 'order' does not exist \(did you mean 'public.orders'\?\)"):
        source(pg_dsn, table="order").test_connection()
    with pytest.raises(FatalConnectorError, match=r"column 'updatedat' does not exist \(did you mean 'updated_at'\?\)"):
        source(pg_dsn, cursor="updatedat", table="orders").test_connection()


def test_missing_select_permission_is_named(pg_server, pg_dsn):
    make_orders(pg_dsn)
    execute(pg_dsn, "DROP ROLE IF EXISTS reader_noperm", "CREATE ROLE reader_noperm LOGIN PASSWORD 'pw-reader'")
    try:
        dsn = pg_server.dsn_for(psycopg2.extensions.parse_dsn(pg_dsn)["dbname"], user="reader_noperm", password="pw-reader")
        with pytest.raises(FatalConnectorError, match="permission denied for table orders; grant it with GRANT SELECT"):
            source(dsn, table="orders").test_connection()
    finally:
        execute(pg_dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'reader_noperm'")
        execute(pg_dsn, "DROP ROLE reader_noperm")
