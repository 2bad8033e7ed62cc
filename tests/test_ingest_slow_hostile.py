"""Runs of bytes between records that the readers took a Python step per byte or line for (CRs or
garbage lines between WARC records: 1.4 s a MB; a JSON lines file of blank lines: 3 us and one event a
line). They are skipped by regex over the stream's buffer now: the steps taken must not grow with the
run, and the events must account for the same bytes, errors and offsets as before. Counts, not times."""
from __future__ import annotations

import pytest

from hostile_inputs import jsonl_line, page
from pipeline.ingest import read_file
from pipeline.ingest.events import Broken, Document, NotDocument
from pipeline.ingest.jsonl import FieldMap
from pipeline.ingest.streams import Decompressed

RUN = 200_000  # bytes of the hostile run: 200k steps for the old readers, a few now
STEPS_PER_RUN = 10  # what a run may add to the stream's takes (one per buffer refill or line start found)


def read(path, max_record_bytes=1 << 20):
    return list(read_file(str(path), "auto", FieldMap(), max_record_bytes))


def takes(monkeypatch, path, max_record_bytes=1 << 20) -> tuple[list, int]:
    """(events, how many times the reader took bytes from the stream)."""
    calls, take = [0], Decompressed._take

    def counted(self, n):
        calls[0] += 1
        return take(self, n)

    monkeypatch.setattr(Decompressed, "_take", counted)
    return read(path, max_record_bytes), calls[0]


FIRST, SECOND = page("keep-1"), page("keep-2")
WARC_RUNS = {  # name -> (bytes between the two records of `run` bytes, the error they make)
    "CRs": (lambda run: b"\r" * run, None),
    "CRLFs": (lambda run: b"\r\n" * (run // 2), None),
    "garbage lines": (lambda run: b"x\n" * (run // 2), "corrupt_header"),
    "one garbage line": (lambda run: b"x" * run + b"\n", "corrupt_header"),
}


@pytest.mark.parametrize("shape", sorted(WARC_RUNS))
def test_a_run_between_warc_records_is_skipped_in_bulk(tmp_path, monkeypatch, shape):
    make, error = WARC_RUNS[shape]
    small, big = tmp_path / "small.warc", tmp_path / "big.warc"
    small.write_bytes(FIRST + make(100) + SECOND)
    big.write_bytes(FIRST + make(RUN) + SECOND)
    (small_events, small_takes), (big_events, big_takes) = takes(monkeypatch, small), takes(monkeypatch, big)
    assert big_takes - small_takes < STEPS_PER_RUN
    run = len(make(RUN))
    expected = [(Document, "urn:test:keep-1", 0)]
    expected += [(Broken, error, len(FIRST))] if error else []
    expected += [(Document, "urn:test:keep-2", len(FIRST) + run)]
    assert [(type(e), getattr(e, "reason", None) or e.id,
             getattr(e, "offset", None) if isinstance(e, Broken) else e.source_offset) for e in big_events] == expected
    # the run's bytes go with the record before it, or make the error
    assert [e.nbytes for e in big_events] == [len(FIRST) + (0 if error else run)] + ([run] if error else []) + [len(SECOND)]
    assert len(small_events) == len(big_events)


def test_newlines_before_the_first_warc_record_and_a_short_content_length(tmp_path, monkeypatch):
    """Newlines before the first record count with it; a Content-Length that ends before garbage
    lines is a length_mismatch holding them, found at the next record."""
    head, body = page("short").split(b"\r\n\r\n", 1)
    short = head + b"\r\n\r\n" + body[:-4] + b"x\n" * (RUN // 2) + b"\r\n\r\n"  # its Content-Length misses the garbage
    path = tmp_path / "x.warc"
    path.write_bytes(b"\r\n" * (RUN // 2) + FIRST + short + SECOND)
    evs, steps = takes(monkeypatch, path)
    assert [(type(e), getattr(e, "reason", None)) for e in evs] == [
        (Document, None), (Broken, "length_mismatch"), (Document, None)]
    assert evs[1].offset == RUN + len(FIRST)
    assert sum(e.nbytes for e in evs) == path.stat().st_size
    assert steps < 200  # the header lines of three records and the runs' few


def test_blank_json_lines_are_one_event_a_run_with_the_same_counts(tmp_path, monkeypatch):
    good = jsonl_line("keep-1", "text")
    path = tmp_path / "blank.jsonl"
    path.write_bytes(good + b"\n" * RUN + b" \t\r\n" * (RUN // 4) + good)
    evs, steps = takes(monkeypatch, path)
    blank = [e for e in evs if isinstance(e, NotDocument)]
    assert {(e.reason, e.docs) for e in blank} == {("blank_line", 0)}
    assert sum(e.nbytes for e in blank) == 2 * RUN  # what the stage counts: bytes, no docs
    assert len(blank) < STEPS_PER_RUN and steps < 2 * STEPS_PER_RUN
    assert [(type(e), e.source_offset) for e in evs if isinstance(e, Document)] == [
        (Document, 0), (Document, len(good) + 2 * RUN)]


@pytest.mark.parametrize("newline", [b"\n", b"\r"])
def test_a_blank_line_over_max_record_bytes_in_a_run_is_still_its_own_error(tmp_path, newline):
    """Each line of a run is held to max_record_bytes, as when the lines were read one by one."""
    good = jsonl_line("keep-1", "text").replace(b"\n", newline)
    long_blank = b" " * 50 + newline
    path = tmp_path / "blank.jsonl"
    path.write_bytes(good + newline * 5 + long_blank + b"\t" + newline * 3 + good)
    evs = read(path, max_record_bytes=40)
    assert [(type(e), getattr(e, "reason", None)) for e in evs] == [
        (Document, None), (NotDocument, "blank_line"), (NotDocument, "blank_line"), (Broken, "record_too_large"),
        (NotDocument, "blank_line"), (NotDocument, "blank_line"), (Document, None)]
    assert evs[3].offset == len(good) + 5 and evs[3].nbytes == len(long_blank)
    assert sum(e.nbytes for e in evs) == path.stat().st_size
