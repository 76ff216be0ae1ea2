"""The Beam side of the parquet sink (imported only when a job is built: Beam takes ~1 s to import)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.core.errors import ConfigError, SinkError
from osmosis_beam.core.records import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter, EncodedBatch
from osmosis_beam.io.files.arrow import (
    NULL,
    SUFFIX,
    Col,
    build_table,
    conform,
    declared_decimal,
    parse_pinned,
    value_col,
    widen_type,
)
from osmosis_beam.io.files.staged import fsync_dir, os_error_text


class _WriteParquetFn(beam.DoFn):
    """Writes each bundle's batches into one staged Parquet file (a new one only when the schema widens)."""

    def __init__(self, staging_dir: str, *, compression: str, row_group_size: int, pinned: Mapping[str, str],
                 metadata: Mapping[str, str] | None = None, declared: Mapping[str, tuple[int, int]] | None = None) -> None:
        self._staging = staging_dir
        self._declared = dict(declared or {})  # field -> (precision, scale) the source declares
        self._compression = compression
        self._row_group_size = row_group_size
        self._pinned_spec = dict(pinned)
        self._metadata = dict(metadata or {})
        self._written = Metrics.counter(METRICS_NAMESPACE, "records_written")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letter")

    def setup(self) -> None:
        self._pinned = {name: parse_pinned(name, spec) for name, spec in self._pinned_spec.items()}

    def start_bundle(self) -> None:
        self._schema: dict[str, Col] = dict(self._pinned)  # the columns of the current file (so far)
        self._file_schema = None  # the pyarrow schema of the open file, if one is open
        self._writer = None
        self._tmp = self._final = None
        self._pending: list = []
        self._pending_rows = 0
        self._pending_arrow = False  # the pending tables came as Arrow from the source (their schema is theirs)

    # One batch: find each record's columns; a record with a conflicting value is a dead letter.
    def process(self, batch):
        import pyarrow as pa

        if isinstance(batch, EncodedBatch):  # the zero-decode path: an Arrow table in the typed path's types
            if not isinstance(batch.lines, list):
                self._append_arrow(batch.lines)
                return
            batch = batch.lines  # records the source decoded as the typed path does (values it must check)
        if self._pending and self._pending_arrow:
            self._guarded(self._roll)  # the typed records' schema is their own: a file of their own
        schema = dict(self._schema)
        kept = []
        for record in batch:
            changes: dict[str, Col] = {}
            error = None
            for name, value in record.items():
                name = str(name)
                try:
                    need = value_col(value)
                except (TypeError, ValueError) as exc:
                    error = f"field {name!r}: {exc}"
                    break
                if need.kind == "null":
                    if name not in schema and name not in changes:
                        changes[name] = NULL
                    continue
                current = changes.get(name) or schema.get(name)
                if need.kind == "decimal" and (current is None or current.kind == "null") and name in self._declared:
                    need = declared_decimal(need, *self._declared[name])
                widened = widen_type(current, need)
                if widened is None:
                    error = (
                        f"field {name!r} is {current.describe()} in this file but this record has a "
                        f"{type(value).__name__} ({need.describe()}); cast it, or pin the column in sink.schema"
                    )
                    break
                if widened != current:
                    changes[name] = widened
            if error is not None:
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, DeadLetter("sink: parquet", error, record).to_dict())
                continue
            schema.update(changes)
            kept.append(record)
        if not kept:
            return
        fields = [col.arrow_field(name) for name, col in schema.items()]
        arrow_schema = pa.schema(fields, metadata=self._metadata)
        try:
            table = build_table(kept, schema, arrow_schema)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            # pyarrow refused a value the type rules let through: find the records, dead-letter them.
            good = []
            for record in kept:
                try:
                    build_table([record], schema, arrow_schema)
                    good.append(record)
                except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                    self._dead.inc()
                    yield beam.pvalue.TaggedOutput(
                        DEAD_LETTER_TAG, DeadLetter("sink: parquet", f"cannot write the record: {exc}", record).to_dict()
                    )
            kept = good
            if not kept:
                return
            table = build_table(kept, schema, arrow_schema)
        if self._file_schema is not None and not arrow_schema.equals(self._file_schema, check_metadata=True):
            self._guarded(self._roll)  # the open file's schema cannot hold this batch: finish it, continue in a new one
        self._pending.append(table)
        self._pending_rows += len(kept)
        self._schema = schema
        self._written.inc(len(kept))
        if self._pending_rows >= self._row_group_size:
            self._guarded(self._flush)

    def _append_arrow(self, table) -> None:
        """Buffer a table the source built with the column types the typed path would derive."""
        if not table.num_rows:
            return
        table = table.replace_schema_metadata(self._metadata)
        if self._pending and not self._pending_arrow:
            self._guarded(self._roll)
        if self._file_schema is not None and not table.schema.equals(self._file_schema, check_metadata=True):
            self._guarded(self._roll)
        self._pending.append(table)
        self._pending_arrow = True
        self._pending_rows += table.num_rows
        self._written.inc(table.num_rows)
        if self._pending_rows >= self._row_group_size:
            self._guarded(self._flush)

    def _guarded(self, write) -> None:
        """Run a write; a failing disk (ENOSPC, EIO) becomes a SinkError naming the file."""
        try:
            write()
        except OSError as exc:  # pyarrow's IO errors are OSErrors, often without errno or file name
            if not exc.filename:
                exc.filename = self._tmp or self._staging
            writer, self._writer = self._writer, None
            try:
                if writer is not None:
                    writer.close()
            except OSError:
                pass
            if self._tmp:
                try:
                    os.unlink(self._tmp)
                except OSError:
                    pass
            error = SinkError(f"sink parquet: cannot write {self._staging}: {os_error_text(exc)}")
            error._tagged_with_step = True  # Beam re-raises it as it is instead of logging a traceback
            raise error from None

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        target = self._file_schema
        if target is None and self._pending_arrow:
            target = self._pending[0].schema
        elif target is None:
            target = pa.schema([col.arrow_field(name) for name, col in self._schema.items()], metadata=self._metadata)
        tables = self._pending if self._pending_arrow else [conform(t, target) for t in self._pending]
        self._pending, self._pending_rows, self._pending_arrow = [], 0, False
        if self._writer is None:
            os.makedirs(self._staging, exist_ok=True)
            part = uuid.uuid4().hex
            self._tmp = os.path.join(self._staging, f".part-{part}.tmp")
            self._final = os.path.join(self._staging, f"part-{part}{SUFFIX}")
            self._writer = pq.ParquetWriter(
                self._tmp, target, compression=None if self._compression == "none" else self._compression
            )
            self._file_schema = target
        self._writer.write_table(pa.concat_tables(tables))

    def _roll(self) -> None:
        self._flush()
        self._close()

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        with open(self._tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self._final)
        fsync_dir(Path(self._staging))
        self._writer = None
        self._file_schema = None

    def finish_bundle(self) -> None:
        self._guarded(self._roll)
        self._schema = dict(self._pinned)


class WriteParquet(beam.PTransform):
    """Writes record batches as Parquet files into ``staging_dir`` (dead letters on the ``dead_letter`` tag)."""

    def __init__(self, staging_dir: str, *, compression: str = "snappy", row_group_size: int = 65536,
                 schema: Mapping[str, str] | None = None, metadata: Mapping[str, str] | None = None,
                 declared: Mapping[str, tuple[int, int]] | None = None) -> None:
        """``declared`` maps fields to the (precision, scale) the source declares for them (``numeric(12,2)``):
        a decimal column takes that type while its values fit it."""
        super().__init__()
        problems: list[str] = []
        for name, spec in (schema or {}).items():
            try:
                parse_pinned(str(name), spec)
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems=[f"sink.{p}" for p in problems])
        self._fn = _WriteParquetFn(
            staging_dir, compression=compression, row_group_size=row_group_size, pinned=schema or {}, metadata=metadata,
            declared=declared,
        )

    def expand(self, batches):
        return batches | "Write Parquet" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTER_TAG, main="written")
