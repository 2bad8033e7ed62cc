"""Parquet dumps to documents, batch by batch of one row group, or of a run of small consecutive row
groups read together (field names as for JSON lines). A batch holds BATCH_ROWS rows, fewer where the
rows are large: about BATCH_BYTES by the row group's average row, or by the largest values of its
dictionaries of byte arrays (strings, JSON, enums, BSON, bytes of any length or fixed), which the footer
counts once however many rows repeat them, and for a list, by the values each row holds.

A row's bytes are the UTF-8 bytes of its text (Parquet has no raw record to count); its offset is
the row number in the file. Nested fields are reached with dotted paths on struct columns. Binary
columns (strings a writer left unannotated, e.g. Hive's and Impala's) read as UTF-8, and so does a
string column holding bytes that are not UTF-8 (Parquet readers do not check): a text that is not
UTF-8 is an `invalid_utf8` error for its row (its bytes counted), another field keeps its bad
bytes as `\\xNN` escapes (a binary digest id does not cost the record), at any depth of a struct,
list or map column. A row group that does not read (a damaged page) is one `corrupt_parquet` error
for its rows not read yet, at the first of them, counting the row group's compressed bytes; the
other row groups are read. A text over ingest.max_record_bytes is a `record_too_large` error, as for
the other formats (its row is read: a Parquet value cannot be skipped unread).
"""
from __future__ import annotations

from typing import IO, Any, Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.ingest.events import Broken, Document, Event
from pipeline.ingest.jsonl import FieldMap, lookup, object_event

BATCH_ROWS = 1024
# Uncompressed bytes a batch holds at the most, by its row groups' average row (the footer knows no
# row's own size), or by the largest values of string columns' dictionaries where that is larger
# (ParquetReader._row_bytes). A row group of 48 texts of 8 MiB came in one batch: peak RSS 2.4 GB,
# now 1.3 GB (the data page pyarrow's writer put all 48 in is decoded whole) or 0.3 GB (a page per text).
BATCH_BYTES = 32 << 20
RUN_BYTES = 64 << 20  # uncompressed bytes of small row groups read together, held until they all read
READ_BUFFER_BYTES = 8 << 20  # column chunks are read in pieces this large, not each whole (pre_buffer)
# the column types a text can be read from whose UTF-8 size binary_length gives (a string column's
# offsets; a binary column's bytes are its text when they are UTF-8, ParquetReader._event)
TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
# the physical types whose dictionary values may be large, whatever their logical type: a JSON, enum or BSON
# value of 8 MiB in 100 rows peaked at 2.7 GB RSS, a fixed_size_binary one at 1.7 GB (a string one: 0.23 GB)
BYTE_ARRAY_TYPES = ("BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY")
READ_ERRORS = (pa.ArrowException, OSError, UnicodeDecodeError)  # the last: a string _rows cannot make bytes


def _rows(batch: pa.RecordBatch) -> tuple[list[dict], bool]:
    """The batch's rows, and whether some of their values may be bytes (`_as_text`). A string
    holding bytes that are not UTF-8 (Parquet readers do not check), at any depth of a struct, list
    or map column, makes its column come as bytes, so that a bad value costs its row
    (ParquetReader._event), not the row group: to_pylist raises on the first."""
    holds_bytes = any(_holds_bytes(t) for t in batch.schema.types)
    try:
        return batch.to_pylist(), holds_bytes
    except UnicodeDecodeError:
        return pa.RecordBatch.from_arrays([_bytes_unless_utf8(c) for c in batch.columns],
                                          names=batch.schema.names).to_pylist(), True


def _text_sizes(batch: pa.RecordBatch, path: str) -> list[int | None]:
    """Each row's text size in bytes, from its string column's offsets (not by encoding each text);
    None for each row where the text is not a string column reached through structs (object_event
    then counts what it finds). The text's top-level column is in the batch (ParquetReader.__iter__)."""
    top, *inner = path.split(".")
    column = batch.column(top)
    for name in inner:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(name) < 0:
            return [None] * batch.num_rows
        column = pc.struct_field(column, name)
    if not any(is_type(column.type) for is_type in TEXT_TYPES):
        return [None] * batch.num_rows
    return pc.binary_length(column).to_pylist()


def _batch_rows(row_bytes: float) -> int:
    return max(1, min(BATCH_ROWS, int(BATCH_BYTES / max(row_bytes, 1))))


def _fitting_batch_rows(row_bytes: np.ndarray) -> int:
    """The most rows (BATCH_ROWS by the average row, halved while some batch would hold more than
    BATCH_BYTES) that batches of a row group whose rows hold `row_bytes` may have; 1 at the least."""
    rows = _batch_rows(float(row_bytes.mean()))
    ends = np.concatenate(([0], np.cumsum(row_bytes)))
    while rows > 1:
        starts = np.arange(0, len(row_bytes), rows)
        if (ends[np.minimum(starts + rows, len(row_bytes))] - ends[starts]).max() <= BATCH_BYTES:
            break
        rows //= 2
    return rows


def _leaves(array: pa.Array, rows: np.ndarray) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """The leaf arrays under `array`, in the order of the Parquet file's leaf columns (depth first),
    each with the row of each of its values; `rows`: the row of each of `array`'s values."""
    t = array.type
    if pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from _leaves(array.field(i), rows)
    elif pa.types.is_fixed_size_list(t):
        yield from _leaves(array.flatten(), np.repeat(rows, t.list_size))
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        offsets = array.offsets.to_numpy()
        values = array.values.slice(offsets[0], offsets[-1] - offsets[0])  # a map's: its (key, value) structs
        yield from _leaves(values, np.repeat(rows, np.diff(offsets)))
    else:
        yield array, rows


def _holds_bytes(t: pa.DataType) -> bool:
    """Whether values of type `t` come from Arrow as bytes or hold some that do."""
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or any(_holds_bytes(t.field(i).type) for i in range(t.num_fields)))


def _bytes_unless_utf8(column: pa.Array) -> pa.Array:
    as_bytes = _strings_as_binary(column.type)
    if as_bytes == column.type:
        return column
    try:
        column.validate(full=True)  # checks the UTF-8, nested strings too, in C
        return column
    except pa.ArrowInvalid:
        return column.cast(as_bytes)


def _strings_as_binary(t: pa.DataType) -> pa.DataType:
    """`t` with each string type in it, at any depth, the binary type of the same offset width."""
    def field(i: int) -> pa.Field:
        return t.field(i).with_type(_strings_as_binary(t.field(i).type))

    if pa.types.is_struct(t):
        return pa.struct([field(i) for i in range(t.num_fields)])
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(_strings_as_binary(t.key_type)),
                       t.item_field.with_type(_strings_as_binary(t.item_type)), t.keys_sorted)
    if pa.types.is_list(t):
        return pa.list_(field(0))
    if pa.types.is_large_list(t):
        return pa.large_list(field(0))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(field(0), t.list_size)
    return {pa.string(): pa.binary(), pa.large_string(): pa.large_binary()}.get(t, t)


def _as_text(value: Any) -> Any:
    """`value` with the bytes in it, at any depth, as text; bytes that are not UTF-8 as \\xNN escapes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {key: _as_text(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):  # a map's entries are (key, value) tuples
        return type(value)(_as_text(item) for item in value)
    return value


class _Leaf(NamedTuple):
    """A leaf column read that holds byte arrays."""
    position: int  # among the leaves read, in order
    column: int  # in the file's schema
    path: str
    fixed_bytes: int  # a fixed-length byte array's length; 0 for other byte arrays
    repeated: bool  # under a list or map: a row holds any number of its values


class ParquetReader:
    def __init__(self, raw: IO[bytes], fields: FieldMap, max_record_bytes: int):
        """Reads the footer and schema (raises when they do not read: the whole file is lost)."""
        self.fields = fields
        self.max_record_bytes = max_record_bytes
        self.raw = raw
        self.file = pq.ParquetFile(raw, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
        top = fields.top_level_names()
        self.columns = [c for c in self.file.schema_arrow.names if c in top]
        schema = self.file.schema
        leaves = [i for i in range(len(schema)) if schema.column(i).path.split(".")[0] in top]  # read, in order
        self.byte_leaves = [_Leaf(position, i, c.path, c.length if c.physical_type == "FIXED_LEN_BYTE_ARRAY" else 0,
                                  c.max_repetition_level > 0)
                            for position, i in enumerate(leaves)
                            for c in [schema.column(i)] if c.physical_type in BYTE_ARRAY_TYPES]
        self.singles = [leaf for leaf in self.byte_leaves if not leaf.repeated]
        self.lists = [leaf for leaf in self.byte_leaves if leaf.repeated]
        self.dictionaries: pq.ParquetFile | None = None  # _dictionary_file

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
        """The row groups in order, consecutive small ones together (up to BATCH_ROWS rows and RUN_BYTES,
        a group's dictionary values counted for each row by their column chunk's size: _batch_size)."""
        run, rows, size = [], 0, 0
        for group in range(self.file.num_row_groups):
            meta = self.file.metadata.row_group(group)
            group_bytes = max(meta.total_byte_size, meta.num_rows * self._dictionary_row_bytes(meta, {}, self.byte_leaves))
            if run and (rows + meta.num_rows > BATCH_ROWS or size + group_bytes > RUN_BYTES):
                yield run
                run, rows, size = [], 0, 0
            run.append(group)
            rows, size = rows + meta.num_rows, size + group_bytes
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
        batch_rows = self._batch_size(groups)
        for batch in self.file.iter_batches(batch_size=batch_rows, row_groups=groups, columns=self.columns):
            rows, holds_bytes = _rows(batch)
            for obj, text_bytes in zip(rows, _text_sizes(batch, self.fields.text)):
                yield self._event(obj, row, holds_bytes, text_bytes)
                row += 1

    def _batch_size(self, groups: list[int]) -> int:
        """The rows a batch of `groups` holds: by the average row by the footer, or by the values of the
        byte array leaves with dictionary pages, whose values the footer counts once however many rows
        repeat them (100 rows of one 8 MiB text came in one batch: 2.7 GB at the peak). A dictionary
        value is no larger than its column chunk; where that bound would make batches smaller, or all
        the values of the lists could hold more than a batch, the dictionaries are read to find their
        largest values, and where the lists still could, each row's bytes in them are counted (16 rows
        of 16 values of 1 MiB among 1,008 empty lists came in one batch of 25 rows, by the values per
        row on average: 0.87 GB at the peak, now 0.2 GB). Small row groups read together are bounded
        as a whole by _runs."""
        metas = [self.file.metadata.row_group(group) for group in groups]
        average_row = sum(m.total_byte_size for m in metas) / max(sum(m.num_rows for m in metas), 1)
        meta = metas[0]
        if len(groups) > 1 or (_batch_rows(self._dictionary_row_bytes(meta, {}, self.byte_leaves))
                               >= _batch_rows(average_row) and not self._lists_may_overflow(meta, {})):
            return _batch_rows(average_row)
        largest = self._largest_dictionary_values(groups[0])
        singles = self._dictionary_row_bytes(meta, largest, self.singles)
        if not self._lists_may_overflow(meta, largest):
            return _batch_rows(max(average_row, singles + self._dictionary_row_bytes(meta, largest, self.lists)))
        return _fitting_batch_rows(np.maximum(average_row, singles + self._list_row_bytes(groups[0], largest)))

    def _lists_may_overflow(self, meta: pq.RowGroupMetaData, largest: dict[int, int]) -> bool:
        """Whether the values of the lists with dictionary pages could hold more than a batch together."""
        return self._dictionary_row_bytes(meta, largest, self.lists) * meta.num_rows > BATCH_BYTES

    def _dictionary_row_bytes(self, meta: pq.RowGroupMetaData, largest: dict[int, int], leaves: list[_Leaf]) -> float:
        """The bytes a row may hold in `leaves` with a dictionary page, each value counted at its
        dictionary's largest value (`largest`, by the leaf's position) or, not known, at its fixed
        length or its column chunk's size (no value is larger), a list's as many times as the chunk
        has values per row."""
        row_bytes = 0.0
        for leaf in leaves:
            chunk = meta.column(leaf.column)
            if chunk.has_dictionary_page:
                value_bytes = largest.get(leaf.position, leaf.fixed_bytes or chunk.total_uncompressed_size)
                row_bytes += value_bytes * chunk.num_values / max(meta.num_rows, 1)
        return row_bytes

    def _dictionary_file(self) -> pq.ParquetFile:
        """The file with its byte array leaves read as dictionaries, those of extension types too (JSON)."""
        if self.dictionaries is None:
            self.dictionaries = pq.ParquetFile(self.raw, pre_buffer=False, buffer_size=READ_BUFFER_BYTES,
                                               read_dictionary=[leaf.path for leaf in self.byte_leaves],
                                               arrow_extensions_enabled=False)
        return self.dictionaries

    def _largest_dictionary_values(self, group: int) -> dict[int, int]:
        """The bytes of the largest value of each dictionary of `group`'s byte array leaves, by the
        leaf's position among those read: read with the first row, without decoding the rest."""
        first_row = next(self._dictionary_file().iter_batches(batch_size=1, row_groups=[group], columns=self.columns))
        leaves = (leaf for column in first_row.columns for leaf, _ in _leaves(column, np.zeros(1, dtype=np.int64)))
        return {position: pc.max(pc.binary_length(leaf.dictionary)).as_py() or 0
                for position, leaf in enumerate(leaves) if pa.types.is_dictionary(leaf.type)}

    def _list_row_bytes(self, group: int, largest: dict[int, int]) -> np.ndarray:
        """Each row's bytes in the values of `group`'s lists with dictionary pages, from their indices
        (read in batches, not decoded) and the lengths of their dictionaries' values; a list of
        fixed-length values (Arrow reads them decoded) at its average row."""
        meta = self.file.metadata.row_group(group)
        leaves = [leaf for leaf in self.lists if meta.column(leaf.column).has_dictionary_page and not leaf.fixed_bytes]
        fixed = self._dictionary_row_bytes(meta, largest, [leaf for leaf in self.lists if leaf.fixed_bytes])
        if not leaves:
            return np.full(meta.num_rows, fixed)
        parts = []
        for batch in self._dictionary_file().iter_batches(batch_size=BATCH_ROWS, row_groups=[group],
                                                          columns=[leaf.path for leaf in leaves]):
            row_bytes = np.full(batch.num_rows, fixed)
            arrays = (leaf for column in batch.columns for leaf in _leaves(column, np.arange(batch.num_rows)))
            for leaf, (array, rows) in zip(leaves, arrays):
                if pa.types.is_dictionary(array.type):
                    lengths = pc.binary_length(array.dictionary).take(array.indices).fill_null(0).to_numpy()
                    row_bytes += np.bincount(rows, weights=lengths, minlength=batch.num_rows)
                else:  # a type Arrow does not read as a dictionary (a decimal): at its average row
                    row_bytes += self._dictionary_row_bytes(meta, largest, [leaf])
            parts.append(row_bytes)
        return np.concatenate(parts)

    def _event(self, obj: dict, row: int, holds_bytes: bool, text_bytes: int | None) -> Event:
        if holds_bytes:
            text = lookup(obj, self.fields.text)
            if isinstance(text, bytes):
                try:
                    text.decode("utf-8")
                except UnicodeDecodeError as e:
                    return Broken("invalid_utf8", row, f"field {self.fields.text!r} is not UTF-8: {e}", len(text))
            obj = _as_text(obj)  # the text, being UTF-8, decodes to the same text as a string column's
        event = object_event(obj, self.fields, row, text_bytes)
        if isinstance(event, Document) and event.nbytes > self.max_record_bytes:  # as a JSON line that long
            return Broken("record_too_large", row, f"text of {event.nbytes} bytes is over ingest.max_record_bytes "
                          f"({self.max_record_bytes})", event.nbytes)
        return event
