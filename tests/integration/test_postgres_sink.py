"""The PostgreSQL sink against a real server: upserts, appends, re-runs, full refresh, table creation, safety."""
from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
import uuid

import psycopg2
import pytest

from osmosis_beam.core.errors import ConfigError, SinkError
from osmosis_beam.core.records import EncodedBatch
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.postgres.sink import PostgresSink
from osmosis_beam.registry import default_registry
from tests.integration.pg_support import (  # noqa: F401  (fixtures)
    T0,
    execute,
    fetch,
    pg_dsn,
    pg_module_database,
    source,
    sync_once,
    utc,
    write_through_beam,
)

HI = utc(2024, 1, 2)


def sink(dsn: str, table: str = "copy", **options) -> PostgresSink:
    return PostgresSink({"dsn": dsn, "table": table, **options}, pipeline_id="t")


def make_source(dsn: str, rows: int = 10) -> None:
    execute(
        dsn,
        "CREATE TABLE orders (id bigserial PRIMARY KEY, updated_at timestamptz NOT NULL, amount numeric(12,2), "
        "status text, doc jsonb)",
        "INSERT INTO orders (updated_at, amount, status, doc) "
        f"SELECT %s::timestamptz + g * interval '1 minute', g / 100.0, 'new', jsonb_build_object('g', g) "
        f"FROM generate_series(1, {rows}) g",
        args=(T0,),
    )


def table(dsn: str, name: str = "copy", order: str = "id") -> list[tuple]:
    return fetch(dsn, f"SELECT * FROM {name} ORDER BY {order}")


def column_types(dsn: str, name: str) -> dict[str, str]:
    return dict(fetch(
        dsn,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (name,),
    ))


def leftovers(dsn: str) -> list[str]:
    return [r[0] for r in fetch(dsn, "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE '\\_osmosis\\_stage\\_%'")]


def test_registered_as_postgres_and_checks_options():
    assert default_registry().sink("postgres") is PostgresSink
    with pytest.raises(ConfigError, match="sink.key: required for mode upsert"):
        PostgresSink({"dsn": "postgresql://u@h/db", "table": "t", "mode": "upsert"})
    with pytest.raises(ConfigError, match="sink.table: .* is not a table name"):
        PostgresSink({"dsn": "postgresql://u@h/db", "table": '"; DROP TABLE x; --'})
    assert PostgresSink({"dsn": "postgresql://u@h/db", "table": "t", "key": ["id"]}).mode == "upsert"
    assert PostgresSink({"dsn": "postgresql://u@h/db", "table": "t"}).mode == "append"


# -- upserts ------------------------------------------------------------------------------------------------------
def test_updates_to_existing_rows_reach_the_upsert_sink(pg_dsn):
    make_source(pg_dsn)
    orders, copy = source(pg_dsn, table="orders"), sink(pg_dsn, key=["id"])
    sync_once(orders, copy, SyncWindow(T0, HI), "run-1")
    assert len(table(pg_dsn)) == 10 and {r[3] for r in table(pg_dsn)} == {"new"}

    execute(pg_dsn, "UPDATE orders SET status = 'paid', amount = amount + 1, updated_at = %s WHERE id IN (2, 7)",
            args=(utc(2024, 1, 2, 1),))
    execute(pg_dsn, "INSERT INTO orders (updated_at, amount, status) VALUES (%s, 5, 'new')", args=(utc(2024, 1, 2, 2),))
    sync_once(orders, copy, SyncWindow(HI, utc(2024, 1, 3)), "run-2")
    rows = {r[0]: r for r in table(pg_dsn)}
    assert len(rows) == 11
    assert rows[2][3] == "paid" and rows[2][2] == decimal.Decimal("1.02") and rows[2][1] == utc(2024, 1, 2, 1)
    assert rows[7][3] == "paid" and rows[3][3] == "new"
    assert table(pg_dsn) == table(pg_dsn, "orders")  # the copy mirrors the source


def test_a_rerun_of_the_same_window_leaves_the_table_as_one_run_would(pg_dsn):
    make_source(pg_dsn, rows=200)
    orders = source(pg_dsn, table="orders")
    window = SyncWindow(T0, utc(2024, 1, 1, 2))
    target = sink(pg_dsn, "by_key", key=["id"])
    sync_once(orders, target, window, "first", splits=3)
    once = table(pg_dsn, "by_key")
    assert len(once) == 119  # minutes 1..119
    sync_once(orders, target, window, "again", splits=5)  # e.g. the commit failed after the writes
    assert table(pg_dsn, "by_key") == once
    assert target.publish("again", window_hi=window.hi)["already_published"] is True
    assert table(pg_dsn, "by_key") == once


def test_an_append_run_that_failed_and_ran_again_appends_the_window_once(pg_dsn):
    make_source(pg_dsn, rows=200)
    orders = source(pg_dsn, table="orders")
    window = SyncWindow(T0, utc(2024, 1, 1, 2))
    target = sink(pg_dsn, "appended")
    target.prepare("failed")
    write_through_beam(target, "failed", [[{"id": 1}], [{"id": 2}]])
    target.abort("failed")  # the run failed after writing part of the window
    sync_once(orders, target, window, "retry", splits=5)
    assert [r[0] for r in table(pg_dsn, "appended")] == list(range(1, 120))
    # Published but not committed (a crash): the next start sees it published and commits instead of re-running.
    assert target.is_published("retry") is True
    assert target.publish("retry", window_hi=window.hi)["already_published"] is True
    assert len(table(pg_dsn, "appended")) == 119
    assert leftovers(pg_dsn) == []


def test_duplicate_keys_in_one_batch_keep_the_last_record(pg_dsn):
    target = sink(pg_dsn, key=["id"])
    target.prepare("r")
    dead = write_through_beam(target, "r", [[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "c"}]])
    target.publish("r", window_hi=HI)
    assert dead == [] and table(pg_dsn) == [(1, "c"), (2, "b")]


def test_an_existing_table_without_a_unique_key_is_refused_at_prepare(pg_dsn):
    execute(pg_dsn, "CREATE TABLE copy (id int, v text)")
    with pytest.raises(SinkError, match=r"upserts need a primary key or unique index on \(id\)"):
        sink(pg_dsn, key=["id"]).prepare("r")
    execute(pg_dsn, "CREATE UNIQUE INDEX ON copy (id)")
    sink(pg_dsn, key=["id"]).prepare("r")


# -- appends, staging, failures ------------------------------------------------------------------------------------
def test_append_is_invisible_until_published_and_abort_leaves_nothing(pg_dsn):
    target = sink(pg_dsn, "log")
    target.prepare("r1")
    write_through_beam(target, "r1", [[{"n": 1}, {"n": 2}], [{"n": 3}]])
    assert fetch(pg_dsn, "SELECT to_regclass('public.log') IS NULL")[0][0]  # nothing visible yet
    assert target.is_published("r1") is False
    target.abort("r1")  # the run failed
    assert leftovers(pg_dsn) == []
    target.prepare("r2")  # the next run reads the same window again
    write_through_beam(target, "r2", [[{"n": 1}, {"n": 2}], [{"n": 3}]])
    assert target.publish("r2", window_hi=HI)["records"] == 3
    assert target.is_published("r2") is True
    assert table(pg_dsn, "log", "n") == [(1,), (2,), (3,)]


def test_bad_values_go_to_the_dead_letters_and_the_rest_is_written(pg_dsn):
    execute(pg_dsn, "CREATE TABLE copy (id int PRIMARY KEY, qty int NOT NULL, note text)")
    target = sink(pg_dsn, key=["id"])
    target.prepare("r")
    dead = write_through_beam(target, "r", [[
        {"id": 1, "qty": 1, "note": "ok"},
        {"id": 2, "qty": "many", "note": "bad number"},
        {"id": 3, "qty": None, "note": "null in a NOT NULL column"},
        {"id": 4, "qty": 4, "note": "nul \x00 byte"},
        {"id": None, "qty": 5},
        {"id": 6, "qty": 6, "note": "ok"},
    ]])
    target.publish("r", window_hi=HI)
    assert table(pg_dsn) == [(1, 1, "ok"), (6, 6, "ok")]
    errors = {d["record"]["id"]: d["error"] for d in dead}
    assert set(errors) == {2, 3, 4, None}
    assert "invalid input syntax for type integer" in errors[2]
    assert "null value in column \"qty\"" in errors[3]
    assert "NUL" in errors[4] and "key field id is missing or null" in errors[None]
    assert all(d["step"] == "sink: postgres public.copy" for d in dead)


# -- full refresh ---------------------------------------------------------------------------------------------
def test_a_full_refresh_replaces_the_table(pg_dsn):
    make_source(pg_dsn)
    orders = source(pg_dsn, table="orders")
    for name, options in (("by_key", {"key": ["id"]}), ("appended", {})):
        target = sink(pg_dsn, name, **options)
        sync_once(orders, target, SyncWindow(T0, HI), "initial")
        execute(pg_dsn, "INSERT INTO " + name + " (id, updated_at) VALUES (999, now())")  # deleted at the source since
        details, _ = sync_once(orders, target, SyncWindow(None, HI), "refresh", full_refresh=True, prepare_full_refresh=True)
        assert [r[0] for r in table(pg_dsn, name)] == list(range(1, 11)), name
        assert table(pg_dsn, name) == table(pg_dsn, "orders")
    assert leftovers(pg_dsn) == []


def test_a_full_refresh_of_an_empty_source_empties_the_table(pg_dsn):
    make_source(pg_dsn, rows=0)
    execute(pg_dsn, "CREATE TABLE copy (id bigint PRIMARY KEY, updated_at timestamptz)", "INSERT INTO copy VALUES (1, now())")
    details, _ = sync_once(source(pg_dsn, table="orders"), sink(pg_dsn, key=["id"]), SyncWindow(None, HI), "r",
                           full_refresh=True)
    assert table(pg_dsn) == [] and details["deleted"] == 1


def test_a_full_refresh_announced_only_at_publish_keeps_rows_and_says_so(pg_dsn):
    make_source(pg_dsn, rows=3)
    execute(pg_dsn, "CREATE TABLE copy (id bigint PRIMARY KEY, updated_at timestamptz)", "INSERT INTO copy VALUES (99, now())")
    details, _ = sync_once(source(pg_dsn, table="orders"), sink(pg_dsn, key=["id"]), SyncWindow(None, HI), "r",
                           full_refresh=True)
    assert "rows deleted at the source were kept" in details["warning"]
    assert [r[0] for r in table(pg_dsn)] == [1, 2, 3, 99]


# -- creating and evolving the table ---------------------------------------------------------------------------------
def test_the_table_is_created_from_the_source_schema(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TYPE mood AS ENUM ('calm', 'angry')",
        "CREATE TABLE src (id int PRIMARY KEY, updated_at timestamptz NOT NULL, price numeric(10,2), tags text[], "
        "feeling mood, doc jsonb, wait interval)",
        "INSERT INTO src VALUES (1, %s, 1.50, '{a}', 'calm', '{\"k\": [1]}', '1 hour')",
        args=(utc(2024, 1, 1, 1),),
    )
    orders = source(pg_dsn, table="src")
    target = sink(pg_dsn, "dw.copy", key=["id"])
    execute(pg_dsn, "CREATE SCHEMA dw")
    target.use_schema(orders.get_schema())
    sync_once(orders, target, SyncWindow(T0, HI), "r")
    assert column_types(pg_dsn, "dw.copy") == {
        "id": "integer", "updated_at": "timestamp with time zone", "price": "numeric(10,2)", "tags": "text[]",
        "feeling": "mood", "doc": "jsonb", "wait": "interval",
    }
    assert fetch(pg_dsn, "SELECT * FROM dw.copy") == [
        (1, utc(2024, 1, 1, 1), decimal.Decimal("1.50"), ["a"], "calm", {"k": [1]}, dt.timedelta(hours=1))
    ]
    assert fetch(pg_dsn, "SELECT count(*) FROM pg_index WHERE indrelid = 'dw.copy'::regclass AND indisprimary")[0][0] == 1


def test_without_a_schema_the_table_and_new_columns_come_from_the_values(pg_dsn):
    target = sink(pg_dsn, key=["id"])
    target.prepare("r1")
    values = {
        "id": 1, "at": utc(2024, 1, 1), "naive": dt.datetime(2024, 1, 1), "amount": decimal.Decimal("0.10"),
        "ratio": 0.25, "flag": True, "doc": {"a": 1}, "items": [1, 2], "uid": uuid.UUID(int=1), "raw": b"\x00\x01",
        "wait": dt.timedelta(seconds=90), "day": dt.date(2024, 2, 29), "later": None,
    }
    write_through_beam(target, "r1", [[values]])
    target.publish("r1", window_hi=HI)
    assert column_types(pg_dsn, "copy") == {
        "id": "bigint", "at": "timestamp with time zone", "naive": "timestamp without time zone", "amount": "numeric",
        "ratio": "double precision", "flag": "boolean", "doc": "jsonb", "items": "jsonb", "uid": "uuid", "raw": "bytea",
        "wait": "interval", "day": "date",
    }
    target.prepare("r2")
    write_through_beam(target, "r2", [[{"id": 2, "later": "now set", "doc": [1, {"b": None}]}]])
    target.publish("r2", window_hi=HI)
    assert column_types(pg_dsn, "copy")["later"] == "text"
    rows = fetch(pg_dsn, "SELECT id, doc, items, uid::text, encode(raw, 'hex'), later FROM copy ORDER BY id")
    assert rows[0][1:5] == ({"a": 1}, [1, 2], "00000000-0000-0000-0000-000000000001", "0001")
    assert rows[1] == (2, [1, {"b": None}], None, None, None, "now set")


def test_create_table_false_never_runs_ddl(pg_dsn):
    with pytest.raises(SinkError, match="does not exist and create_table is false"):
        sink(pg_dsn, key=["id"], create_table=False).prepare("r")


def test_hostile_identifiers_in_the_sink_are_quoted(pg_dsn):
    execute(pg_dsn, "CREATE TABLE victim (id int)")
    name = '"x""; DROP TABLE victim; --"'
    target = sink(pg_dsn, name, key=['id"); DROP TABLE victim; --'])
    target.prepare("r")
    write_through_beam(target, "r", [[{'id"); DROP TABLE victim; --': 1, "v; DROP TABLE victim": "a"}]])
    target.publish("r", window_hi=HI)
    assert fetch(pg_dsn, 'SELECT * FROM "x""; DROP TABLE victim; --"') == [(1, "a")]
    assert fetch(pg_dsn, "SELECT to_regclass('public.victim') IS NOT NULL")[0][0]
    for mode, options in (("upsert", {"key": ["id%s"]}), ("append", {})):
        execute(pg_dsn, 'CREATE SCHEMA IF NOT EXISTS "50%"')
        target = sink(pg_dsn, f'"50%".{mode}%(x)s', **options)
        target.prepare("r")
        write_through_beam(target, "r", [[{"id%s": 1, "v%": "a"}], [{"id%s": 1, "v%": "b"}]])
        target.publish("r", window_hi=HI)
        assert target.is_published("r")
        assert fetch(pg_dsn, f'SELECT "v%%" FROM "50%%"."{mode}%%(x)s" ORDER BY 1', ()) == (
            [("b",)] if mode == "upsert" else [("a",), ("b",)])


def test_wrong_credentials_are_a_sink_error_without_the_password(pg_server, pg_dsn):
    dbname = psycopg2.extensions.parse_dsn(pg_dsn)["dbname"]
    dsn = pg_server.dsn_for(dbname, password="Not-The-Password-42")
    with pytest.raises(SinkError) as err:
        sink(dsn, key=["id"]).prepare("r")
    assert "refused the password for user 'osmosis'" in str(err.value)
    assert "Not-The-Password-42" not in str(err.value) and pg_server.password not in str(err.value)


def test_end_to_end_sync_runs_with_postgres_source_sink_and_state(pg_dsn, tmp_path):
    """The real SyncRunner: PostgreSQL source, PostgreSQL sink, PostgreSQL state store."""
    from osmosis_beam.config import parse_pipeline
    from osmosis_beam.state.postgres import PostgresStateStore
    from osmosis_beam.sync.runner import SyncRunner

    make_source(pg_dsn, rows=50)
    execute(pg_dsn, "UPDATE orders SET updated_at = now() - interval '1 hour' + id * interval '1 second'")
    spec = parse_pipeline({
        "id": "orders_copy",
        "source": {"type": "postgres", "dsn": pg_dsn, "table": "orders"},
        "incremental": {"cursor_field": "updated_at", "safety_lag": "1s"},
        "sink": {"type": "postgres", "dsn": pg_dsn, "table": "copy", "key": ["id"]},
        "read": {"splits": 3, "batch_size": 7},
    })
    store = PostgresStateStore(pg_dsn)
    first = SyncRunner(spec, store, home=tmp_path).run()
    assert (first.status, first.records_read, first.records_written) == ("succeeded", 50, 50)
    execute(pg_dsn, "UPDATE orders SET status = 'paid', updated_at = clock_timestamp() WHERE id <= 5")
    time.sleep(1.2)  # past the safety lag
    second = SyncRunner(spec, store, home=tmp_path).run()
    assert (second.status, second.records_read) == ("succeeded", 5)
    assert table(pg_dsn) == table(pg_dsn, "orders")
    third = SyncRunner(spec, store, home=tmp_path).run()  # nothing new: no Beam job
    assert third.records_read == 0 and third.window.lo == second.window.hi
    assert store.get_watermark("orders_copy").value == third.window.hi
    store.close()


def test_records_without_any_value_are_dead_letters_not_empty_rows(pg_dsn):
    target = sink(pg_dsn, "log")
    target.prepare("r")
    dead = write_through_beam(target, "r", [[{"a": None}, {"b": None}], [{"a": 1}]])
    target.publish("r", window_hi=HI)
    assert [d["error"] for d in dead] == ["no field has a value; nothing to write"] * 2
    assert table(pg_dsn, "log", "a") == [(1,)]


# -- upserts from a COPY stage (the zero-decode path): MERGE, the unique-key shortcut, ties, the fallback --------------
def copy_rows(*rows: tuple, origin: int | None = None) -> EncodedBatch:
    """A pgcopy batch as the postgres source sends it: ``(position, id, v)`` rows in COPY text, read from the
    restriction starting at ``origin`` (as the splittable read tags them), or untagged."""
    return EncodedBatch("pgcopy", [("\t".join(map(str, row)) + "\n").encode() for row in rows], None, ("id", "v"),
                        origin=origin)


def staged_copy_upsert(dsn: str, run_id: str, *batches: EncodedBatch, name: str = "copy") -> tuple[PostgresSink, dict]:
    """Write each batch through Beam in its own pipeline (so in this order), then publish."""
    target = sink(dsn, name, key=["id"])
    target.use_encoding("pgcopy")
    target.prepare(run_id)
    for batch in batches:
        assert write_through_beam(target, run_id, [batch]) == []
    return target, target.publish(run_id, window_hi=HI)


def test_copy_upserts_keep_the_last_row_per_key_in_cursor_order_when_keys_repeat(pg_dsn, caplog):
    execute(pg_dsn, "CREATE TABLE copy (id int PRIMARY KEY, v text)", "INSERT INTO copy VALUES (1, 'old'), (9, 'keep')")
    caplog.set_level("INFO", logger="osmosis_beam.io.postgres.sink")
    _, details = staged_copy_upsert(
        pg_dsn, "r",
        copy_rows((30, 1, "late"), (40, 2, "b-late"), (50, 3, "tie-first")),
        # written after, but read earlier (another split): its rows lose to the later cursor positions
        copy_rows((10, 1, "early"), (20, 2, "b-early"), (5, 4, "d")),
        # the same key at the same position: the row written last wins, as in the typed path
        copy_rows((50, 3, "tie-last")),
    )
    assert table(pg_dsn) == [(1, "late"), (2, "b-late"), (3, "tie-last"), (4, "d"), (9, "keep")]
    assert details["records"] == 4
    # The primary key catches the repeat: the MERGE straight from the stage fails, and is undone.
    assert "MERGE straight from the stage failed (MERGE command cannot affect row a second time" in caplog.text
    assert "keys repeat in the stage" in caplog.text
    assert leftovers(pg_dsn) == []


@pytest.mark.parametrize("ddl, straight", [
    ("id int PRIMARY KEY, v text", True),
    # Nullable key columns: a MERGE would insert two rows with a NULL key; the stage's keys are checked first.
    ("id int UNIQUE, v text", False),
    # A deferrable key would catch the repeat only at commit.
    ("id int NOT NULL, v text, UNIQUE (id) DEFERRABLE INITIALLY DEFERRED", False),
], ids=["primary-key", "nullable-unique", "deferrable"])
def test_copy_upserts_of_new_keys_that_repeat_keep_the_last_row(pg_dsn, caplog, ddl, straight):
    """Keys the table does not hold yet, twice in the stage: one row each, the later cursor position winning."""
    execute(pg_dsn, f"CREATE TABLE copy ({ddl})")
    caplog.set_level("INFO", logger="osmosis_beam.io.postgres.sink")
    _, details = staged_copy_upsert(pg_dsn, "r", copy_rows((20, 5, "late"), (10, 5, "early"), (1, 6, "f")),
                                    copy_rows((30, 6, "f-late")))
    assert table(pg_dsn) == [(5, "late"), (6, "f-late")]
    assert details["records"] == 2
    # (an INSERT, since the table is empty; a MERGE into a table with rows, as below)
    assert ("INSERT (the table is empty) straight from the stage failed (duplicate key value violates unique "
            "constraint" in caplog.text) is straight
    assert "keys repeat in the stage: the last row per key" in caplog.text
    assert leftovers(pg_dsn) == []


def test_copy_upserts_with_unique_keys_skip_the_sort_and_update_and_insert(pg_dsn, caplog):
    execute(pg_dsn, "CREATE TABLE copy (id int PRIMARY KEY, v text)", "INSERT INTO copy VALUES (1, 'old'), (9, 'keep')")
    caplog.set_level("INFO", logger="osmosis_beam.io.postgres.sink")
    _, details = staged_copy_upsert(pg_dsn, "r", copy_rows((1, 1, "new"), (2, 2, "b")), copy_rows((3, 3, "c"), (4, 4, r"\N")))
    assert table(pg_dsn) == [(1, "new"), (2, "b"), (3, "c"), (4, None), (9, "keep")]
    assert details["records"] == 4
    # Straight from the stage: the primary key would have caught a repeated key, so the stage went unchecked.
    assert "with MERGE (no key repeats in the stage: the table's unique key would have caught one)" in caplog.text
    assert "checking the stage" not in caplog.text
    # The same window again (a re-run): every key is now in the table, and the table stays as it was.
    staged_copy_upsert(pg_dsn, "r2", copy_rows((1, 1, "new"), (2, 2, "b")), copy_rows((3, 3, "c"), (4, 4, r"\N")))
    assert table(pg_dsn) == [(1, "new"), (2, "b"), (3, "c"), (4, None), (9, "keep")]


def test_copy_upserts_by_a_composite_key_with_no_other_column(pg_dsn):
    execute(pg_dsn, "CREATE TABLE pairs (a int, b text, PRIMARY KEY (a, b))", "INSERT INTO pairs VALUES (1, 'x')")
    target = sink(pg_dsn, "pairs", key=["a", "b"])
    target.use_encoding("pgcopy")
    target.prepare("r")
    batch = EncodedBatch("pgcopy", [b"1\t1\tx\n", b"2\t2\tx\n", b"3\t1\ty\n", b"4\t2\tx\n"], None, ("a", "b"))
    assert write_through_beam(target, "r", [batch]) == []
    details = target.publish("r", window_hi=HI)
    assert table(pg_dsn, "pairs", "a, b") == [(1, "x"), (1, "y"), (2, "x")]
    assert details["records"] == 2  # the two new pairs; (1, 'x') was there and has nothing to update


def stage_tables(dsn: str) -> dict[str, int]:
    """The stage tables and their own rows (a part's rows are not its stage's)."""
    names = leftovers(dsn)
    return {n: fetch(dsn, f'SELECT count(*) FROM ONLY "{n}"')[0][0] for n in names}


def physical_order(dsn: str, name: str = "copy") -> list:
    return [r[0] for r in fetch(dsn, f"SELECT id FROM {name} ORDER BY ctid")]


@pytest.mark.parametrize("mode", ["upsert", "append"])
def test_copy_rows_of_each_restriction_are_staged_apart_and_published_in_cursor_order(pg_dsn, mode, caplog):
    """Two restrictions' batches arrive interleaved (two splits read side by side): each restriction's rows go
    into a part of the stage, and the publish writes them part after part, in cursor order, then drops them."""
    execute(pg_dsn, "CREATE TABLE copy (id int PRIMARY KEY, v text)")
    target = sink(pg_dsn, key=["id"], mode=mode) if mode == "upsert" else sink(pg_dsn, mode=mode)
    target.use_encoding("pgcopy")
    target.prepare("r")
    hi_split, lo_split = 1_000, -5  # restriction starts; the second sorts first (a negative position too)
    batches = [
        copy_rows((1_000, 100, "a"), (1_001, 101, "b"), origin=hi_split),
        copy_rows((-5, 1, "c"), (-4, 2, "d"), origin=lo_split),
        copy_rows((1_002, 102, "e"), origin=hi_split),
        copy_rows((-3, 3, "f"), origin=lo_split),
    ]
    for batch in batches:  # one pipeline each: in this order
        assert write_through_beam(target, "r", [batch]) == []
    staged = stage_tables(pg_dsn)
    stage = min(staged, key=len)
    parts = {f"{stage}_{(o + (1 << 63)):016x}": n for o, n in ((lo_split, 3), (hi_split, 3))}
    assert staged == {stage: 0, **parts}
    assert sorted(parts) == list(parts)  # the names sort as the restrictions do
    caplog.set_level("INFO", logger="osmosis_beam.io.postgres.sink")
    details = target.publish("r", window_hi=HI)
    assert "publishing the stage's 2 parts (one per restriction read) one after the other" in caplog.text
    if mode == "upsert":  # a first load: into the empty table, a plain INSERT does what the MERGE would
        assert "upserted 6 rows with INSERT (the table is empty) (no key repeats in the stage" in caplog.text
    assert details["records"] == 6
    assert physical_order(pg_dsn) == [1, 2, 3, 100, 101, 102]  # part after part, each in cursor order
    assert table(pg_dsn) == [(1, "c"), (2, "d"), (3, "f"), (100, "a"), (101, "b"), (102, "e")]
    assert leftovers(pg_dsn) == []


def test_copy_upserts_with_keys_repeated_across_parts_keep_the_last_cursor_position(pg_dsn):
    """A key in two restrictions (the cursor moved it): the later position wins, whatever the parts' order."""
    execute(pg_dsn, "CREATE TABLE copy (id int PRIMARY KEY, v text)")
    _, details = staged_copy_upsert(
        pg_dsn, "r",
        copy_rows((50, 1, "late"), (51, 2, "b"), origin=50),
        copy_rows((10, 1, "early"), (11, 3, "c"), origin=10),
        copy_rows((12, 4, "untagged")),  # a batch without a restriction goes into the stage itself
    )
    assert table(pg_dsn) == [(1, "late"), (2, "b"), (3, "c"), (4, "untagged")]
    assert details["records"] == 4
    assert leftovers(pg_dsn) == []


def test_a_failed_run_leaves_no_stage_parts(pg_dsn):
    """Abort, the next prepare of the run and the stale-stage clean-up each drop the parts with their stage."""
    execute(pg_dsn, "CREATE TABLE copy (id int PRIMARY KEY, v text)")
    target = sink(pg_dsn, key=["id"])
    target.use_encoding("pgcopy")
    for how in ("abort", "clean", "prepare"):
        target.prepare("r")
        write_through_beam(target, "r", [copy_rows((1, 1, "a"), origin=1), copy_rows((9, 9, "b"), origin=9)])
        assert len(stage_tables(pg_dsn)) == 3
        if how == "abort":
            target.abort("r")
        elif how == "clean":
            assert sink(pg_dsn, key=["id"]).clean_stale_staging() == 1  # another object: the run is not its own
        else:
            sink(pg_dsn, key=["id"], mode="append").prepare("r")  # a staged run starts from an empty stage
        assert leftovers(pg_dsn) == [], how
    assert table(pg_dsn) == []


@pytest.mark.parametrize("rows", ["empty", "rows"])
@pytest.mark.parametrize("key", ["PRIMARY KEY", "UNIQUE"])
def test_a_merge_that_meets_a_key_inserted_meanwhile_falls_back_to_on_conflict(pg_dsn, caplog, key, rows):
    """Another session inserts a key of the stage while the publish runs: the upsert still completes.

    With a primary key, the MERGE straight from the stage meets it, and the checked MERGE after it then
    updates that row; with a nullable unique key, the checked MERGE meets it and INSERT ... ON CONFLICT follows.
    Into an empty table the first attempt is a plain INSERT, which meets it the same way.
    """
    execute(pg_dsn, f"CREATE TABLE copy (id int {key}, v text)")
    if rows == "rows":
        execute(pg_dsn, "INSERT INTO copy VALUES (9, 'keep')")
    verb = "INSERT (the table is empty)" if rows == "empty" else "MERGE"
    caplog.set_level("INFO", logger="osmosis_beam.io.postgres.sink")
    target = sink(pg_dsn, key=["id"])
    target.use_encoding("pgcopy")
    target.prepare("r")
    assert write_through_beam(target, "r", [copy_rows((1, 1, "a"), (2, 2, "ours"), (3, 3, "c"))]) == []
    other = psycopg2.connect(pg_dsn)
    try:
        with other.cursor() as cur:
            cur.execute("INSERT INTO copy VALUES (2, 'theirs')")  # not committed yet: the MERGE waits for it
        result: dict = {}
        publisher = threading.Thread(target=lambda: result.update(target.publish("r", window_hi=HI)))
        publisher.start()
        deadline = time.monotonic() + 30
        while not fetch(pg_dsn, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND (query LIKE 'MERGE%' OR query LIKE 'INSERT INTO \"public\".\"copy\" %')"):
            assert publisher.is_alive() and time.monotonic() < deadline, "the publish never waited for the other insert"
            time.sleep(0.05)
        other.commit()  # the MERGE now meets a unique violation
        publisher.join(60)
        assert not publisher.is_alive()
    finally:
        other.close()
    assert table(pg_dsn) == [(1, "a"), (2, "ours"), (3, "c")] + ([(9, "keep")] if rows == "rows" else [])
    assert result["records"] == 3
    if key == "PRIMARY KEY":
        assert f"{verb} straight from the stage failed (duplicate key value violates unique constraint" in caplog.text
        assert "with MERGE (no key repeats in the stage)" in caplog.text
    else:
        assert f"{verb} failed (duplicate key value violates unique constraint" in caplog.text
        assert "with INSERT ... ON CONFLICT" in caplog.text
    assert leftovers(pg_dsn) == []


def test_a_stage_is_unlogged_and_never_autovacuumed(pg_dsn):
    """The stage is written once and read once at publish: no WAL, and no autovacuum pass while the run writes it."""
    execute(pg_dsn, "CREATE TABLE copy (id int PRIMARY KEY, v text)")
    target = sink(pg_dsn, key=["id"])
    target.use_encoding("pgcopy")
    target.prepare("r")
    assert write_through_beam(target, "r", [copy_rows((1, 1, "a"))]) == []
    (persistence, options), = fetch(
        pg_dsn, "SELECT relpersistence, reloptions FROM pg_class WHERE relkind = 'r' AND relname LIKE '\\_osmosis\\_stage\\_%'")
    assert persistence == "u"
    assert "autovacuum_enabled=false" in options
    target.publish("r", window_hi=HI)
    assert table(pg_dsn) == [(1, "a")] and leftovers(pg_dsn) == []
