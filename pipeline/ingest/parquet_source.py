"""Parquet dumps to documents, one row group batch at a time (field names as for JSON lines).

A row's bytes are the UTF-8 bytes of its text (Parquet has no raw record to count); its offset is
the row number in the file. Nested fields are reached with dotted paths on struct columns.
"""
from __future__ import annotations

from typing import IO, Iterator

import pyarrow.parquet as pq

from pipeline.ingest.events import Broken, Event
from pipeline.ingest.jsonl import FieldMap, object_event

BATCH_ROWS = 1024


class ParquetReader:
    def __init__(self, raw: IO[bytes], fields: FieldMap):
        self.raw = raw
        self.fields = fields

    def __iter__(self) -> Iterator[Event]:
        fields = self.fields
        pf = pq.ParquetFile(self.raw)
        top = fields.top_level_names()
        columns = [c for c in pf.schema_arrow.names if c in top]
        if fields.text.split(".")[0] not in columns:
            yield Broken("missing_text", 0, f"no column {fields.text!r} (columns: {', '.join(pf.schema_arrow.names)})",
                         0, docs=pf.metadata.num_rows)
            return
        row = 0
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            for obj in batch.to_pylist():
                yield object_event(obj, fields, row, None)
                row += 1
