"""The PostgreSQL sink keeps the source's full column types: modifiers, arrays, domains (issue 15, item 5).

Against the real pagila sample database: ``language.name`` is ``character(20)`` (it became ``char(1)``
and every row went to the dead letters), ``film.rental_rate`` is ``numeric(4,2)``, ``release_year`` is the
domain ``year`` over integer (it became text), ``special_features`` is ``text[]``, ``rating`` an enum.
"""
from __future__ import annotations

import psycopg2
import pytest

from osmosis_beam.config import parse_pipeline
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.faults.pg_support import execute, pagila_dsn  # noqa: F401  (fixture)



def sync(home, source_dsn, target_dsn, table, key, **source):
    spec = parse_pipeline({
        "id": f"pagila_{table}",
        "source": {"type": "postgres", "dsn": source_dsn, "table": f"public.{table}", **source},
        "incremental": {"cursor_field": "last_update"},
        "sink": {"type": "postgres", "dsn": target_dsn, "table": f"copy.{table}", "key": key},
    })
    return SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home).run()


def column_types(dsn, schema, table):
    return dict(execute(dsn, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                             "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                        params=(f"{schema}.{table}",)))


def rows(dsn, query):
    return execute(dsn, query)


def test_language_character_20_arrives_whole(home, pagila_dsn, pg_dsn, faults):
    execute(pg_dsn, "CREATE SCHEMA copy")
    faults.injected()  # a fixed-width type with a modifier, the one that dead-lettered every row
    run = sync(home, pagila_dsn, pg_dsn, "language", ["language_id"])
    assert run.status == "succeeded" and run.dead_letter == 0
    assert column_types(pg_dsn, "copy", "language")["name"] == "character(20)"
    want = rows(pagila_dsn, "SELECT language_id, name, last_update FROM public.language ORDER BY 1")
    got = rows(pg_dsn, "SELECT language_id, name, last_update FROM copy.language ORDER BY 1")
    assert len(want) == 6 and got == want
    faults.checked(len(got))


def test_film_keeps_numeric_precision_domains_arrays_and_enums(home, pagila_dsn, pg_dsn, faults):
    execute(pg_dsn, "CREATE SCHEMA copy")
    faults.injected(3)  # numeric(p,s), a domain, an array; the enum does not exist in the target
    run = sync(home, pagila_dsn, pg_dsn, "film", ["film_id"],
               columns=["film_id", "title", "release_year", "rental_rate", "replacement_cost", "special_features",
                        "rating", "last_update"])
    assert run.status == "succeeded" and run.dead_letter == 0
    types = column_types(pg_dsn, "copy", "film")
    assert types["rental_rate"] == "numeric(4,2)"
    assert types["replacement_cost"] == "numeric(5,2)"
    assert types["release_year"] == "integer"  # the domain public.year, resolved to its base type
    assert types["special_features"] == "text[]"
    assert types["title"] == "text"
    assert types["rating"] == "text"  # the enum public.mpaa_rating does not exist here
    query = ("SELECT film_id, title, release_year, rental_rate, replacement_cost, special_features, rating::text, "
             "last_update FROM {} ORDER BY 1")
    want = rows(pagila_dsn, query.format("public.film"))
    got = rows(pg_dsn, query.format("copy.film"))
    assert len(want) == 1000 and got == want
    faults.checked(len(got))


def test_modifiers_of_every_kind_and_nested_domains(home, pg_server, pg_dsn, faults):
    source = pg_server.create_database("types_source")
    try:
        execute(source,
                "CREATE DOMAIN small_money AS numeric(6,3)",
                "CREATE DOMAIN tiny_money AS small_money CHECK (VALUE < 100)",
                "CREATE DOMAIN code AS varchar(8)",
                "CREATE TABLE t (id int PRIMARY KEY, c character(5), v varchar(7), n numeric(4,2), "
                "ts timestamp(3) with time zone, tm time(2) without time zone, b bit varying(9), "
                "arr numeric(3,1)[], m tiny_money, codes code[], "
                "last_update timestamptz NOT NULL DEFAULT now() - interval '1 minute')",
                "INSERT INTO t VALUES (1, 'ab', 'abcdefg', 12.34, '2024-01-02 03:04:05.678+00', '01:02:03.45', "
                "B'101', '{1.5,2.5}', 99.125, '{abc,defghijk}')")
        execute(pg_dsn, "CREATE SCHEMA copy")
        faults.injected()
        run = sync(home, source, pg_dsn, "t", ["id"])
        assert run.status == "succeeded" and run.dead_letter == 0
        types = column_types(pg_dsn, "copy", "t")
        assert types == {
            "id": "integer", "c": "character(5)", "v": "character varying(7)", "n": "numeric(4,2)",
            "ts": "timestamp(3) with time zone", "tm": "time(2) without time zone", "b": "bit varying(9)",
            "arr": "numeric(3,1)[]", "m": "numeric(6,3)", "codes": "character varying(8)[]",
            "last_update": "timestamp with time zone",
        }
        query = "SELECT id, c, v, n, ts, tm, b, arr, m, codes::text[], last_update FROM {}"
        assert rows(pg_dsn, query.format("copy.t")) == rows(source, query.format("public.t"))
        faults.checked(1)
    finally:
        pg_server.drop_database("types_source")


def test_a_hostile_type_text_cannot_reach_the_ddl(pg_dsn, faults):
    """``to_regtype`` parses the whole text as one type name: anything else is refused, never executed."""
    faults.injected()
    conn = psycopg2.connect(pg_dsn)
    try:
        with conn.cursor() as cur:
            for hostile in ("integer); DROP TABLE x; --", "int4 default 1", "text[] CHECK (false)"):
                with pytest.raises(psycopg2.Error):
                    cur.execute("SELECT to_regtype(%s)", (hostile,))
                conn.rollback()
    finally:
        conn.close()
