"""The document schema (DESIGN.md) and the schemas of rejected rows and error records."""
from __future__ import annotations

import hashlib

import pyarrow as pa

# Columns every document has, in this order. Later stages append their own prefixed columns
# (`q_*` quality signals, `dup_*` cluster fields, `n_tokens`, ...).
DOC_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("url", pa.string()),
    ("source", pa.string()),
    ("source_file", pa.string()),
    ("source_offset", pa.int64()),
    ("crawl_date", pa.string()),
    ("lang", pa.string()),
    ("lang_score", pa.float32()),
    ("record_id", pa.string()),  # the record's own id (WARC-Record-ID, a dump's id field); crawls repeat them
    ("title", pa.string()),  # the page's title (HTML <title>, a dump's title field); null where none (WET)
])

# Quality's copy of a document's text as it came in, only where its line rules (C4) changed the
# text (null elsewhere): dedup hashes it, so copies of a page match however the rules cut them.
TEXT_BEFORE_REWRITE = "q_text_before_rewrite"

REJECT_REASON = "reject_reason"  # column added to rows under rejected/<reason>/
REJECT_DETAIL = "reject_detail"  # optional free text: the value that failed, the survivor id, ...

ERROR_SCHEMA = pa.schema([
    ("stage", pa.string()),
    ("source_file", pa.string()),
    ("source_offset", pa.int64()),
    ("reason", pa.string()),  # short class, used as the key in stats.json
    ("message", pa.string()),  # the full error text
    ("bytes", pa.int64()),  # how many input bytes this error accounts for
    ("doc_id", pa.string()),  # when the error concerns a known document
])


def doc_id(file_key: str, offset: int) -> str:
    """The document id: unique per record, stable, derived from the file's key (ingest: the source's
    name and the file's path below the source's folder, `pipeline.stages.ingest.id_root`) and offset."""
    digest = hashlib.sha1(f"{file_key}\0{offset}".encode()).hexdigest()[:20]
    return f"doc:{digest}"


def text_bytes(column: pa.Array | pa.ChunkedArray) -> int:
    """UTF-8 bytes of a string column (nulls count 0), without materialising Python strings."""
    import pyarrow.compute as pc

    lengths = pc.binary_length(column)
    total = pc.sum(lengths).as_py()
    return int(total or 0)


def reject_reason_slug(reason: str) -> str:
    """A reason usable as a directory name: rejected/<reason>/."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in reason) or "unknown"
