"""The public write transforms standalone, in a plain ``beam.Pipeline()``, against real files and servers.

What a Beam user relies on: once the pipeline is DONE the output is complete and visible (the finalize
stage published it: staged files renamed into place, an append table's stage merged in one transaction);
a pipeline that fails publishes nothing; the :class:`WriteResult` carries the count written, the
publication's details and, with ``.with_exception_handling()``, the records the sink refused. Without it,
a refused record fails the pipeline and nothing is published.
"""
from __future__ import annotations

import decimal
import math

import apache_beam as beam
import pytest

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.io import WriteResult, WriteToJsonl, WriteToMongoDB, WriteToParquet, WriteToPostgres
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.io.files.parquet import read_parquet_dir
from osmosis_beam.io.postgres.client import STAGE_PREFIX
from tests.integration.mongo_support import mongo_db  # noqa: F401  (fixture)
from tests.integration.pg_support import execute, fetch, pg_dsn, pg_module_database  # noqa: F401  (fixtures)
from tests.integration.transforms_support import Collect

RECORDS = [{"id": i, "name": f"n{i}", "amount": decimal.Decimal(f"{i}.50")} for i in range(1, 26)]


class _Boom(Exception):
    pass


def _explode_at(n):
    def fn(record):
        if record["id"] == n:
            raise _Boom(f"record {n} is broken upstream")
        return record
    return fn


def _write(write, records, out: Collect | None = None):
    """Run ``records | write`` in a plain pipeline; collect the result's outputs into ``out``."""
    with beam.Pipeline() as p:
        result = p | beam.Create(records) | write
        assert isinstance(result, WriteResult)
        if out is not None:
            result.written | "Written" >> out.sink("written")
            result.published | "Published" >> out.sink("published")
            result.dead_letter | "Dead" >> out.sink("dead")
    return result


# -- files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("write_cls, read", [(WriteToJsonl, read_jsonl_dir), (WriteToParquet, read_parquet_dir)])
def test_file_output_is_complete_and_published_once_done(tmp_path, write_cls, read):
    out = Collect()
    write = write_cls(path=str(tmp_path / "out"), batch_size=4)
    _write(write, RECORDS, out)
    rows = list(read(tmp_path / "out"))
    assert sorted(int(r["id"]) for r in rows) == list(range(1, 26))
    assert out["written"] == [25]
    [published] = out["published"]
    assert published["records_written"] == 25 and published["files"] >= 1 and published["run_id"] == write.run_id
    assert published["path"].endswith(f"-{write.run_id}")
    assert out["dead"] == []
    assert not (tmp_path / "out" / "_staging").exists()  # nothing left behind


@pytest.mark.parametrize("write_cls, read", [(WriteToJsonl, read_jsonl_dir), (WriteToParquet, read_parquet_dir)])
def test_a_failing_pipeline_publishes_nothing(tmp_path, write_cls, read):
    write = write_cls(path=str(tmp_path / "out"), batch_size=2)
    with pytest.raises(Exception) as info:
        with beam.Pipeline() as p:
            p | beam.Create(RECORDS) | beam.Map(_explode_at(20)) | write
    assert "record 20 is broken upstream" in str(info.value)
    assert list(read(tmp_path / "out")) == []  # the staged part files are not output
    write.abort()  # and abort() removes them
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_jsonl_refused_record_fails_and_publishes_nothing_by_default(tmp_path):
    records = RECORDS[:5] + [{"id": 99, "amount": math.nan}]  # NaN has no JSON form
    with pytest.raises(Exception) as info:
        with beam.Pipeline() as p:
            p | beam.Create(records) | "Write orders" >> WriteToJsonl(path=str(tmp_path / "out"))
    text = str(info.value)
    assert "Write orders: 1 record(s) could not be written, so nothing was published" in text
    assert ".with_exception_handling()" in text
    assert list(read_jsonl_dir(tmp_path / "out")) == []
    assert not (tmp_path / "out" / "_staging").exists()  # the finalize stage aborted the staged run


def test_jsonl_with_exception_handling_publishes_the_rest_and_returns_dead_letters(tmp_path):
    records = RECORDS[:5] + [{"id": 99, "amount": math.nan}]
    out = Collect()
    _write(WriteToJsonl(path=str(tmp_path / "out")).with_exception_handling(), records, out)
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == [1, 2, 3, 4, 5]
    assert out["written"] == [5]
    [letter] = out["dead"]
    assert letter["step"] == "sink: jsonl" and "JSON" in letter["error"] and "99" in letter["record"]


def test_full_refresh_replaces_only_the_sinks_own_output(tmp_path):
    root = tmp_path / "out"
    _write(WriteToJsonl(path=str(root)), RECORDS[:10])
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("not the sink's")  # a user's file beside the output
    _write(WriteToJsonl(path=str(root), full_refresh=True), RECORDS[10:12])
    assert sorted(r["id"] for r in read_jsonl_dir(root)) == [11, 12]
    assert (root / "notes" / "README.txt").read_text() == "not the sink's"  # a sink only removes its own output


def test_write_arguments_are_checked_at_construction(tmp_path):
    with pytest.raises(ConfigError) as info:
        WriteToParquet(path=str(tmp_path), compression="rar", row_group_size=0, batch_size=-1, colour=1)
    problems = info.value.problems
    assert any(p.startswith("sink.compression: ") for p in problems)
    assert any(p.startswith("sink.row_group_size: ") for p in problems)
    assert any(p.startswith("sink.colour: unknown option") for p in problems)
    assert any(p.startswith("WriteToParquet.batch_size: ") for p in problems)


# -- PostgreSQL ----------------------------------------------------------------------------------------


def test_postgres_upserts_standalone_and_a_rerun_leaves_one_copy(pg_dsn):
    out = Collect()
    _write(WriteToPostgres(dsn=pg_dsn, table="orders", key=["id"]), RECORDS, out)
    _write(WriteToPostgres(dsn=pg_dsn, table="orders", key=["id"]),
           [{**r, "name": "again"} for r in RECORDS[:3]])
    rows = fetch(pg_dsn, "SELECT id, name, amount FROM orders ORDER BY id")
    assert len(rows) == 25 and [r[1] for r in rows[:4]] == ["again", "again", "again", "n4"]
    assert rows[4][2] == decimal.Decimal("5.50")
    assert out["written"] == [25] and out["dead"] == []


def test_postgres_append_is_published_by_the_finalize_stage_in_one_transaction(pg_dsn):
    execute(pg_dsn, "CREATE TABLE events (id int, name text, amount numeric)")
    out = Collect()
    _write(WriteToPostgres(dsn=pg_dsn, table="events", mode="append", batch_size=3), RECORDS, out)
    assert fetch(pg_dsn, "SELECT count(*) FROM events") == [(25,)]
    [published] = out["published"]
    assert published["records"] == 25 and published["table"] == "public.events"
    assert fetch(pg_dsn, "SELECT count(*) FROM pg_tables WHERE starts_with(tablename, %s)", (STAGE_PREFIX,)) == [(0,)]

    write = WriteToPostgres(dsn=pg_dsn, table="events", mode="append", batch_size=1)
    with pytest.raises(Exception):
        with beam.Pipeline() as p:
            p | beam.Create(RECORDS) | beam.Map(_explode_at(7)) | write
    assert fetch(pg_dsn, "SELECT count(*) FROM events") == [(25,)]  # the failed pipeline appended nothing
    write.abort()  # drops the failed pipeline's staging table
    assert fetch(pg_dsn, "SELECT count(*) FROM pg_tables WHERE starts_with(tablename, %s)", (STAGE_PREFIX,)) == [(0,)]


def test_postgres_refused_rows_are_dead_letters(pg_dsn):
    execute(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY, name text, amount numeric)")
    records = RECORDS[:4] + [{"id": None, "name": "no key"}]
    out = Collect()
    _write(WriteToPostgres(dsn=pg_dsn, table="orders", key=["id"]).with_exception_handling(), records, out)
    assert fetch(pg_dsn, "SELECT count(*) FROM orders") == [(4,)]
    [letter] = out["dead"]
    assert "key field id is missing or null" in letter["error"] and letter["record"]["name"] == "no key"
    assert out["written"] == [4]


# -- MongoDB -------------------------------------------------------------------------------------------


def test_mongodb_upserts_standalone_with_counts_and_dead_letters(mongo_db):
    records = [{"id": i, "name": f"n{i}"} for i in range(1, 11)] + [{"name": "no key"}]
    out = Collect()
    _write(WriteToMongoDB(uri=mongo_db.uri, database=mongo_db.name, collection="orders", key=["id"])
           .with_exception_handling(), records, out)
    _write(WriteToMongoDB(uri=mongo_db.uri, database=mongo_db.name, collection="orders", key=["id"]),
           [{"id": 1, "name": "again"}])
    docs = sorted(mongo_db.db.orders.find({}, {"_id": 0}), key=lambda d: d["id"])
    assert [d["id"] for d in docs] == list(range(1, 11)) and docs[0]["name"] == "again"
    assert out["written"] == [10]
    [letter] = out["dead"]
    assert letter["record"]["name"] == "no key" and "id" in letter["error"]
