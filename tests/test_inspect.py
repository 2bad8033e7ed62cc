"""`glmdata inspect`: reasons with counts, and a sample of rejected documents with a text preview."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from pipeline.cli import main
from pipeline.inspect import preview, sample_rejected
from pipeline.schema import DOC_SCHEMA
from pipeline.stage import UnitWriter


@pytest.fixture
def stage_dir(tmp_path):
    """A stage output written through the real UnitWriter: two parts, three reasons."""
    out = str(tmp_path / "quality")
    for part, offset in ((0, 0), (1, 100)):
        writer = UnitWriter(out, "quality", part)
        rows = [{"id": f"d{offset + i}", "text": f"document {offset + i}\nsecond line " + "x" * 600,
                 "url": f"http://example.com/{offset + i}", "source": "test", "lang": "en"} for i in range(6)]
        table = pa.Table.from_pylist(rows, DOC_SCHEMA)
        writer.reject(table.slice(0, 3), "too_short", 30, details=["words=3", "words=4", "words=5"])
        writer.reject(table.slice(3, 2), "lang_other:ja", 20)
        writer.reject(table.slice(5, 1), "lang_other:ko", 10)
        writer.close()
    return out


def test_lists_reasons_with_counts(stage_dir, capsys):
    assert main(["inspect", stage_dir]) == 0
    out = capsys.readouterr().out
    assert "too_short" in out and "6" in out
    assert "lang_other:ja" in out and "lang_other:ko" in out  # counted from rejected/ (no stats.json yet)


def test_counts_come_from_stats_json_when_finished(stage_dir, capsys, tmp_path):
    stats = {"dropped": {"too_short": {"docs": 6, "bytes": 60}, "lang_other:ja": {"docs": 4, "bytes": 40}}}
    (tmp_path / "quality" / "stats.json").write_text(json.dumps(stats))
    assert main(["inspect", stage_dir]) == 0
    out = capsys.readouterr().out
    assert "lang_other:ja" in out and "4" in out


def test_samples_a_reason_with_preview(stage_dir, capsys):
    assert main(["inspect", stage_dir, "--reason", "too_short", "-n", "2", "--width", "40"]) == 0
    out = capsys.readouterr().out
    assert out.count("too_short") == 2
    assert "reject_detail: words=" in out and "http://example.com/" in out
    assert "second line" in out and "⏎" in out and "chars)" in out  # one line, truncated


def test_reason_prefix_and_exact_reason(stage_dir):
    assert {r["reject_reason"] for r in sample_rejected(stage_dir, "lang_other", 10)} == {"lang_other:ja", "lang_other:ko"}
    assert {r["reject_reason"] for r in sample_rejected(stage_dir, "lang_other:ko", 10)} == {"lang_other:ko"}
    sample = sample_rejected(stage_dir, "too_short", 4, seed=1)
    assert len(sample) == 4 and sample == sample_rejected(stage_dir, "too_short", 4, seed=1)
    assert len(sample_rejected(stage_dir, "too_short", 100)) == 6


def test_unknown_reason_and_missing_dir(stage_dir, tmp_path, capsys):
    assert main(["inspect", stage_dir, "--reason", "nope"]) == 1
    assert "reasons here:" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "missing")]) == 2  # a usage error: names the folder


def test_preview():
    assert preview("a\nb", 0) == "a ⏎ b"
    assert preview("abcdef", 3) == "abc … (+3 chars)"
    assert preview("", 10) == "(empty text)"


def test_n_is_a_prefix_of_a_larger_n(stage_dir):
    ids = [[r["id"] for r in sample_rejected(stage_dir, "too_short", n, seed=3)] for n in range(1, 7)]
    assert all(ids[k] == ids[k + 1][:k + 1] for k in range(5))
    assert sorted(ids[-1]) == sorted(f"d{o + i}" for o in (0, 100) for i in range(3))


def test_errors_show_file_and_offset(tmp_path, capsys):
    out = str(tmp_path / "ingest")
    writer = UnitWriter(out, "ingest", 0)
    writer.error("crawl/a.warc.gz", 4096, "truncated_gzip", "EOFError: compressed file ended", 300)
    writer.close()
    assert main(["inspect", out, "--errors"]) == 0
    printed = capsys.readouterr().out
    assert "truncated_gzip" in printed and "crawl/a.warc.gz @ offset 4096" in printed and "EOFError" in printed


def test_workdir_lists_stages_and_counted_only_reasons(stage_dir, tmp_path, capsys):
    """A workdir argument lists each stage's reasons; a reason counted but not kept says so plainly."""
    stats = {"stage": "quality", "dropped": {"too_short": {"docs": 6, "bytes": 60},
                                             "mix_not_sampled": {"docs": 9, "bytes": 90}}, "errors": {}}
    (tmp_path / "quality" / "stats.json").write_text(json.dumps(stats))
    assert main(["inspect", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "quality" in listed and "yes (-r)" in listed and "counted only" in listed
    assert main(["inspect", stage_dir, "--reason", "mix_not_sampled"]) == 1
    said = capsys.readouterr().out
    assert "counted but not kept" in said and "reasons here" not in said
