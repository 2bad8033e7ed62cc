"""What a reader says about each piece of its input; the ingest stage routes these to the
output contract (data/, rejected/<reason>/, errors/, dropped counts).

Every input byte lands in exactly one event, so the stage's byte accounting balances by
construction; `docs` is 1 for a record the reader could delimit and 0 for bytes it could not
(see pipeline/ingest/__init__.py for the rules)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from pipeline.ingest.streams import Decompressed


@dataclass
class Document:
    """A document to keep: DOC_SCHEMA fields except lang/lang_score."""

    id: str
    text: str
    url: str | None
    source_offset: int
    crawl_date: str | None
    nbytes: int
    title: str | None = None
    subset: str | None = None  # the record's part of its source (`subset_field`), None for most


@dataclass
class Empty:
    """A document whose text came out empty: rejected with its row, reason `empty_text`."""

    id: str
    url: str | None
    source_offset: int
    crawl_date: str | None
    nbytes: int
    detail: str
    title: str | None = None
    subset: str | None = None


@dataclass
class NotDocument:
    """Input that is not a document (request record, image, blank line): counted per reason."""

    reason: str
    nbytes: int
    docs: int = 1


@dataclass
class Broken:
    """Unreadable input: goes to errors/ with file, offset and reason."""

    reason: str
    offset: int | None
    message: str
    nbytes: int
    docs: int = 1
    doc_id: str | None = None


Event = Document | Empty | NotDocument | Broken


def end_of_data_reason(stream: "Decompressed") -> str:
    if stream.corrupt:
        return "corrupt_gzip" if stream.compression == "gzip" else "corrupt_zstd"
    if stream.truncated:
        return "truncated_gzip" if stream.compression == "gzip" else "truncated_zstd"
    return "truncated_record"


def end_of_data_errors(stream: "Decompressed", cut_reported: bool, unit: str) -> Iterator[Event]:
    """The error for why the data stopped, unless a cut record already said so."""
    if stream.corrupt:
        # offset: where the undecodable compressed bytes begin (a file offset; the message names the member)
        yield Broken(end_of_data_reason(stream), stream.corrupt_offset, stream.corrupt, stream.undecoded_bytes, docs=0)
    elif stream.truncated and not cut_reported:
        yield Broken(end_of_data_reason(stream), stream.pos,
                     f"compressed data ends in the middle of a member, after the last whole {unit}",
                     stream.undecoded_bytes, docs=0)
