"""Parquet dumps to documents, batch by batch of one row group, or of a run of small consecutive row
groups read together (field names as for JSON lines).

A row's bytes are the UTF-8 bytes of its text (Parquet has no raw record to count); its offset is
the row number in the file. Nested fields are reached with dotted paths on struct columns. Binary
columns (strings a writer left unannotated, e.g. Hive's and Impala's) read as UTF-8, and so does a
string column holding bytes that are not UTF-8 (Parquet readers do not check): a text that is not
UTF-8 is an `invalid_utf8` error for its row (its bytes counted), another field keeps its bad
bytes as `\\xNN` escapes (a binary digest id does not cost the record). A row group that does not
read (a damaged page) is one `corrupt_parquet` error for its rows not read yet, at the first of
them, counting the row group's compressed bytes; the other row groups are read. A text over
ingest.max_record_bytes is a `record_too_large` error, as for the other formats (its row is read:
a Parquet value cannot be skipped unread).
"""
from __future__ import annotations

from typing import IO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ingest.events import Broken, Document, Event
from pipeline.ingest.jsonl import FieldMap, object_event

BATCH_ROWS = 1024
RUN_BYTES = 64 << 20  # uncompressed bytes of small row groups read together, held until they all read
READ_ERRORS = (pa.ArrowException, OSError, UnicodeDecodeError)  # the last: a damaged nested string


def _rows(batch: pa.RecordBatch) -> list[dict]:
    """The batch's rows. A string column holding bytes that are not UTF-8 (Parquet readers do not
    check) comes as bytes, so a bad value costs its row (ParquetReader._event), not the row group:
    to_pylist raises on the first."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        return pa.RecordBatch.from_arrays([_bytes_unless_utf8(c) for c in batch.columns],
                                          names=batch.schema.names).to_pylist()


def _bytes_unless_utf8(column: pa.Array) -> pa.Array:
    if column.type not in (pa.string(), pa.large_string()):
        return column
    try:
        column.validate(full=True)  # checks the UTF-8, in C
        return column
    except pa.ArrowInvalid:
        return column.cast(pa.large_binary() if column.type == pa.large_string() else pa.binary())


class ParquetReader:
    def __init__(self, raw: IO[bytes], fields: FieldMap, max_record_bytes: int):
        """Reads the footer and schema (raises when they do not read: the whole file is lost)."""
        self.fields = fields
        self.max_record_bytes = max_record_bytes
        self.file = pq.ParquetFile(raw)
        top = fields.top_level_names()
        self.columns = [c for c in self.file.schema_arrow.names if c in top]

    def __iter__(self) -> Iterator[Event]:
        fields, pf = self.fields, self.file
        if fields.text.split(".")[0] not in self.columns:
            yield Broken("missing_text", 0, f"no column {fields.text!r} (columns: {', '.join(pf.schema_arrow.names)})",
                         0, docs=pf.metadata.num_rows)
            return
        row = 0
        for groups in self._runs():
            rows = sum(pf.metadata.row_group(g).num_rows for g in groups)
            if len(groups) > 1:  # small row groups read together: a reader per group is ~12x slower
                try:
                    events = list(self._events(groups, row))
                except READ_ERRORS:
                    pass  # read again group by group, to tell which is damaged
                else:
                    yield from events
                    row += rows
                    continue
            for group in groups:
                yield from self._group_events(group, row)
                row += pf.metadata.row_group(group).num_rows

    def _runs(self) -> Iterator[list[int]]:
        """The row groups in order, consecutive small ones together (up to BATCH_ROWS rows and RUN_BYTES)."""
        run, rows, size = [], 0, 0
        for group in range(self.file.num_row_groups):
            meta = self.file.metadata.row_group(group)
            if run and (rows + meta.num_rows > BATCH_ROWS or size + meta.total_byte_size > RUN_BYTES):
                yield run
                run, rows, size = [], 0, 0
            run.append(group)
            rows, size = rows + meta.num_rows, size + meta.total_byte_size
        if run:
            yield run

    def _group_events(self, group: int, row: int) -> Iterator[Event]:
        """One row group's rows, from `row` on; a damage is one error for the rows not read yet."""
        meta = self.file.metadata.row_group(group)
        end = row + meta.num_rows
        try:
            for event in self._events([group], row):
                yield event
                row += 1
        except READ_ERRORS as e:
            compressed = sum(meta.column(i).total_compressed_size for i in range(meta.num_columns))
            yield Broken("corrupt_parquet", row, f"row group {group} (rows {row} to {end - 1}) does not read: {e}",
                         compressed, docs=end - row)

    def _events(self, groups: list[int], row: int) -> Iterator[Event]:
        """The rows of `groups` (consecutive), the first being row number `row`."""
        for batch in self.file.iter_batches(batch_size=BATCH_ROWS, row_groups=groups, columns=self.columns):
            for obj in _rows(batch):
                yield self._event(obj, row)
                row += 1

    def _event(self, obj: dict, row: int) -> Event:
        text_column = self.fields.text.split(".")[0]
        for name, value in obj.items():
            if isinstance(value, bytes):
                if name == text_column:
                    try:
                        obj[name] = value.decode("utf-8")
                    except UnicodeDecodeError as e:
                        return Broken("invalid_utf8", row, f"column {name!r} is not UTF-8: {e}", len(value))
                else:
                    obj[name] = value.decode("utf-8", "backslashreplace")
        event = object_event(obj, self.fields, row, None)
        if isinstance(event, Document) and event.nbytes > self.max_record_bytes:  # as a JSON line that long
            return Broken("record_too_large", row, f"text of {event.nbytes} bytes is over ingest.max_record_bytes "
                          f"({self.max_record_bytes})", event.nbytes)
        return event
