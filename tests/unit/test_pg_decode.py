"""The typed PostgreSQL decode: orjson's batch parse gives the stdlib's values exactly, records are built as
``dict(zip(names, row))`` builds them, and the JSONL encoding of a batch is the record-by-record encoding."""
from __future__ import annotations

import decimal
import gc
import json
import math
import pickle
import random
import struct
import threading

import pytest

from osmosis_beam.core.encoding import dumps_bytes, dumps_lines
from osmosis_beam.io.postgres.decode import RowDecoder, gc_paused, loads_json, parse_json_texts


def same(a, b) -> bool:
    """Equal with the same types all the way down (1 == 1.0 == True is not enough), dict key order included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)  # -0.0 vs 0.0, nan
    return a == b


def reference(texts):
    return [None if t is None else loads_json(t) for t in texts]


ODD = [
    # integers at and beyond the 64-bit edges: orjson widens these to floats, the stdlib keeps them
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
    "18446744073709551615", "18446744073709551616", "123456789012345678901234567890",
    '{"big": 100000000000000000000, "small": -100000000000000000000, "ok": 99}',
    "1" + "0" * 400,  # jsonb's text of 1e400
    "0." + "0" * 399 + "1",  # and of 1e-400
    "1e400", "-1e400", "1e-400", "1E+2", "-0.0", "-0", "0.0", "1.0", "5e-324", "1.7976931348623157e308",
    "0.1000000000000000055511151231257827021181583404541015625", "2.2250738585072011e-308",
    "NaN", "-Infinity", "[Infinity, 1]",
    '"\\u00e9\\ud83d\\ude00 \\" \\\\ \\/ \\b\\f\\n\\r\\t"', '"\\ud800"', '"\\udc00x"', '"\\u0000"', '"é☃𝄞"',
    '{"a": 1, "a": 2, "b": 3}', '{"a": 1, "b": 2, "a": 3}', '{"": {"": []}}',
    " {\"padded\" : [ 1 , 2 ] } ", '"a string"', "null", "true", "false", "[]", "{}",
    "[" * 300 + "]" * 300,  # deeper than orjson's encoder goes, within the stdlib's parser
    '{"id": "12345678901234567890123", "n": 1.5}',  # a long digit run inside a string
    '{"x": 12345678901234567, "y": 123456789012345678}',  # 17 and 18 digits: orjson keeps them exact
]


@pytest.mark.parametrize("text", ODD)
def test_each_odd_value_parses_as_the_stdlib_parses_it(text):
    assert same(parse_json_texts([text]), reference([text])), text


def test_odd_values_in_one_batch_with_nulls_and_plain_values():
    plain = ['{"qty": %d, "sku": "SKU-%d", "tags": ["a", "b"]}' % (i, i) for i in range(50)]
    texts = plain[:20] + [None] + ODD + [None] + plain[20:]
    assert same(parse_json_texts(texts), reference(texts))
    # a batch with neither long digit runs nor refusals takes orjson's fast path, NULLs included
    assert same(parse_json_texts(plain + [None]), reference(plain + [None]))
    assert parse_json_texts([]) == []


def test_too_deep_for_the_stdlib_fails_as_before():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        loads_json(deep)
    with pytest.raises(RecursionError):
        parse_json_texts([deep])


def _numbers(rnd: random.Random, n: int):
    """Number texts as jsonb writes them (digits, a fraction) and as json keeps them (exponents, repr, halfway)."""
    for _ in range(n):
        ip, fp = rnd.randint(0, 25), rnd.randint(0, 25)
        s = ("-" if rnd.random() < 0.3 else "") + (str(rnd.randint(1, 9)) + "".join(rnd.choice("0123456789") for _ in range(ip)) if ip else "0")
        if fp:
            s += "." + "".join(rnd.choice("0123456789") for _ in range(fp))
        yield s
        yield f"{s}e{rnd.randint(-330, 330)}"
        x = struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0]
        if math.isfinite(x):
            yield repr(x)
            yield "%.17g" % x
            yield format(decimal.Decimal(x), "f")
            if x:
                # halfway between two doubles: where a parser that is not correctly rounded goes wrong
                mid = (decimal.Decimal(x) + decimal.Decimal(math.nextafter(x, math.inf))) / 2
                yield str(mid)


def test_random_numbers_parse_to_the_same_floats_and_ints():
    """orjson's floats are the stdlib's for every number without a 19-digit run (1.2M cases were run once)."""
    rnd = random.Random(20261201)
    texts = list(_numbers(rnd, 12_000))
    assert len(texts) > 60_000
    for start in range(0, len(texts), 1000):  # batches: the fast path and the careful path both run
        batch = texts[start : start + 1000]
        got, want = parse_json_texts(batch), reference(batch)
        bad = [t for t, g, w in zip(batch, got, want) if not same(g, w)]
        assert not bad, bad[:5]
    # the same numbers inside documents
    docs = ['{"v": [%s, %s]}' % (a, b) for a, b in zip(texts[::2], texts[1::2])]
    assert same(parse_json_texts(docs), reference(docs))


# -- records ---------------------------------------------------------------------------------------------
def test_records_are_dict_zip_with_json_parsed():
    names = ["id", "doc", "note", "raw"]
    oids = [23, 3802, 25, 114]
    rows = [(1, '{"b": 1, "a": [1.5, null]}', "x", '{"k": 1, "k": 2}'), (2, None, None, None),
            (3, "18446744073709551616", "y", " [1e400] ")]
    records = RowDecoder(names, oids).records(rows)
    want = [dict(zip(names, (r[0], None if r[1] is None else loads_json(r[1]), r[2],
                             None if r[3] is None else loads_json(r[3])))) for r in rows]
    assert all(same(g, w) for g, w in zip(records, want)) and len(records) == 3
    assert records[2]["doc"] == 18446744073709551616 and records[2]["raw"] == [math.inf]


@pytest.mark.parametrize("name", ["", "'", '"', "\\", "'}); import os; ({'", "__builtins__", "lambda", "_0", "é ☃",
                                  "a\nb", "x" * 300, "1", "None"])
def test_any_column_name_is_a_key_and_nothing_else(name):
    names = [name, "_1", "other"]
    decoder = RowDecoder(names, [25, 25, 3802])
    assert decoder.records([("v", "w", "[1]")]) == [{name: "v", "_1": "w", "other": [1]}]


def test_many_columns_and_pickling():
    names = [f"c{i}" for i in range(400)]
    decoder = pickle.loads(pickle.dumps(RowDecoder(names, [23] * 400)))
    assert decoder.records([tuple(range(400))]) == [dict(zip(names, range(400)))]
    with pytest.raises(ValueError, match="repeat"):
        RowDecoder(["a", "a"], [23, 23])


def test_the_collector_is_held_off_only_while_building_and_left_off_if_it_was():
    assert gc.isenabled()
    seen = []
    with gc_paused:
        seen.append(gc.isenabled())
        with gc_paused:  # nested
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())
    assert seen == [False, False, False] and gc.isenabled()
    gc.disable()
    try:
        with gc_paused:
            pass
        assert not gc.isenabled()  # the process's own choice stays
    finally:
        gc.enable()

    # Threads building batches at once: the collector is on again once the last is done.
    barrier = threading.Barrier(4)

    def build():
        for i in range(50):
            with gc_paused:
                if i == 0:
                    barrier.wait(timeout=10)  # all four inside at once
                RowDecoder(["a"], [3802]).records([('{"x": [1]}',)] * 100)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gc.isenabled()


# -- the JSONL encoding of a batch -------------------------------------------------------------------------
def test_dumps_lines_is_dumps_bytes_line_by_line():
    import datetime as dt
    import uuid

    records = [
        {"id": i, "at": dt.datetime(2024, 1, 1, 0, 0, i % 60, i, tzinfo=dt.timezone.utc), "amount": decimal.Decimal(i) / 100,
         "doc": {"tags": ["a", None], "n": 1.5}, "u": uuid.UUID(int=i), "b": bytes([i % 256]), "none": None}
        for i in range(300)
    ]
    assert dumps_lines(records) == b"".join(dumps_bytes(r) + b"\n" for r in records)
    assert dumps_lines([]) == b""
    # What orjson cannot write exactly: the careful record-by-record path decides
    assert dumps_lines(records + [{"x": float("nan")}]) is None
    assert dumps_lines(records + [{"x": 1 << 70}]) is None
    assert json.loads(dumps_bytes({"x": 1 << 70})) == {"x": 1 << 70}


# -- the step chain's record functions ---------------------------------------------------------------------
def test_record_functions_give_the_same_batches_on_the_plain_and_the_general_path():
    import collections

    from osmosis_beam.steps.base import apply_record_function

    def reference(fn, records):
        out = []
        for record in records:
            result = fn(record)
            if result is None:
                continue
            out.extend(result) if isinstance(result, list) else out.append(result)
        return out

    records = [{"id": i} for i in range(20)]
    functions = [
        lambda r: {**r, "x": 1},  # only dicts: the plain path
        lambda r: None if r["id"] % 3 else r,
        lambda r: [r, {**r, "copy": True}] if r["id"] % 4 == 0 else r,
        lambda r: collections.OrderedDict(r) if r["id"] == 5 else r,  # a dict subclass stays what it is
        lambda r: [],
    ]
    for fn in functions:
        got, want = apply_record_function(fn, [dict(r) for r in records]), reference(fn, [dict(r) for r in records])
        assert got == want and [type(r) for r in got] == [type(r) for r in want]
    assert apply_record_function(lambda r: r, []) == []
