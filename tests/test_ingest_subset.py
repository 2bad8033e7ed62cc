"""A dump that mixes several corpora names each record's part (the Pile's `meta.pile_set_name`):
with `subset_field`, ingest writes the source "<name>/<part>", which the mix's match_source and
quality.sources name one by one (the Pile's books past Gopher's word cap, its web pages not)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError
from pipeline.ingest import read_file
from pipeline.ingest.events import Document, Empty
from pipeline.ingest.jsonl import MAX_SUBSET_CHARS
from pipeline.runner import run_stage
from pipeline.stages.ingest import EventRouter, IngestStage, SourceSection
from pipeline.stages.langid import LangidStage
from pipeline.stages.quality import QualityStage

from conftest import make_run_config
from test_ingest_stage import read_rows

MAX = 64 << 20
PILE = "meta.pile_set_name"


def write_jsonl(path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def sources_of(path, source: SourceSection) -> list[str]:
    router = EventRouter(None, source, str(path))
    return [router._row(e, e.text if isinstance(e, Document) else "")["source"]
            for e in read_file(str(path), "auto", source.field_map(), MAX) if isinstance(e, (Document, Empty))]


def test_the_subset_field_names_each_records_part(tmp_path):
    path = tmp_path / "pile.jsonl"
    write_jsonl(path, [
        {"text": "a web page", "meta": {"pile_set_name": "Pile-CC"}},
        {"text": "a book", "meta": {"pile_set_name": "PG-19"}},
        {"text": "no meta"},
        {"text": "an object", "meta": {"pile_set_name": {"name": "x"}}},
        {"text": "a number", "meta": {"pile_set_name": 2020}},
        {"text": "a flag", "meta": {"pile_set_name": True}},
        {"text": "spaced", "meta": {"pile_set_name": " FreeLaw\tOpinions\n "}},
        {"text": "control only", "meta": {"pile_set_name": "\x01"}},
        {"text": "long", "meta": {"pile_set_name": "x" * 500}},
        {"text": "", "meta": {"pile_set_name": "PG-19"}},  # rejected as empty, still under its part
    ])
    pile = SourceSection(name="pile", paths=[str(path)], subset_field=PILE)
    assert sources_of(path, pile) == ["pile/Pile-CC", "pile/PG-19", "pile", "pile", "pile/2020", "pile",
                                      "pile/FreeLaw Opinions", "pile", "pile/" + "x" * MAX_SUBSET_CHARS, "pile/PG-19"]
    assert set(sources_of(path, SourceSection(name="pile", paths=[str(path)]))) == {"pile"}  # off by default

    parquet = tmp_path / "pile.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "meta": [{"pile_set_name": "ArXiv"}, None]}), parquet)
    assert sources_of(parquet, SourceSection(name="pile", paths=[str(parquet)], subset_field=PILE)) == [
        "pile/ArXiv", "pile"]


def test_a_file_naming_more_subsets_than_a_dump_has_parts_quarantines_the_rest(tmp_path, monkeypatch):
    """A subset field that differs per record (a URL) made a source per document: keys in every stage's
    counts and report, held by the driver. Past MAX_SUBSETS a record is an error row naming the key."""
    from pipeline.stage import UnitWriter
    from pipeline.stages import ingest

    monkeypatch.setattr(ingest, "MAX_SUBSETS", 3)
    path = tmp_path / "urls.jsonl"
    write_jsonl(path, [{"text": f"page {i}", "url": f"http://example.test/{i % 5}"} for i in range(8)])
    source = SourceSection(name="web", paths=[str(path)], subset_field="url")
    out = UnitWriter(str(tmp_path / "out"), "ingest", 0)
    router = EventRouter(out, source, str(path))
    for event in read_file(str(path), "auto", source.field_map(), MAX):
        router.route(event)
    router.flush()
    stats = out.close()
    assert stats["kept"]["docs"] == 6 and stats["errors"]["too_many_subsets"]["docs"] == 2  # urls 3 and 4
    message = pq.read_table(tmp_path / "out" / "errors" / "part-00000.parquet").column("message")[0].as_py()
    assert "ingest.sources[web].subset_field 'url'" in message and "more than 3 subsets" in message


def test_a_crawl_source_has_no_subset_field(tmp_path):
    with pytest.raises(ConfigError, match=r"ingest.sources\[0\]: subset_field: a warc source has no fields"):
        make_run_config(tmp_path, {"ingest": {"sources": [
            {"name": "cc", "format": "warc", "paths": ["a.warc.gz"], "subset_field": "x"}]}})


def test_quality_rules_for_one_part_of_a_dump(tmp_path, shared_data, spark_session_engine):
    """The same novel in the Pile's PG-19 and Pile-CC: kept from the part whose quality.sources entry
    lifts Gopher's 100,000-word cap, dropped from the other (ingest, langid and quality on Spark)."""
    with open(shared_data / "text/en-books-gutenberg.jsonl", encoding="utf-8") as f:
        emma = next(json.loads(line) for line in f if json.loads(line)["id"] == "gutenberg-austen-emma")
    path = tmp_path / "pile" / "00.jsonl"
    path.parent.mkdir()
    write_jsonl(path, [{"text": emma["text"], "meta": {"pile_set_name": part}} for part in ("PG-19", "Pile-CC")])
    cfg = make_run_config(tmp_path, {
        "ingest": {"sources": [{"name": "pile", "paths": [str(path)], "subset_field": PILE}]},
        "quality": {"sources": {"pile/PG-19": {"en": {"gopher_quality": {"max_doc_words": None}}}}}})
    for stage in (IngestStage, LangidStage, QualityStage):
        run_stage(stage(cfg), spark_session_engine)
    quality = f"{cfg.run.workdir}/quality"
    assert [r["source"] for r in read_rows(quality, "data")] == ["pile/PG-19"]
    assert [(r["source"], r["reject_reason"]) for r in read_rows(quality, "rejected")] == [
        ("pile/Pile-CC", "gopher_quality:max_words")]


def test_mix_sources_take_parts_by_name_and_by_pattern(tmp_path):
    """The first mix source whose match_source names a part (or a pattern matching it) takes it; a
    document another input's source takes by a pattern is counted as taken from that input."""
    from pipeline.stages.mix import assign

    cfg = make_run_config(tmp_path, {"mix": {"target_tokens": 1000, "language_shares": {"en": 1.0}, "sources": [
        {"name": "books", "lang": "en", "stage": "ingest", "match_source": ["pile/PG-19", "pile/Books?"]},
        {"name": "rest", "lang": "en", "stage": "ingest", "match_source": ["pile/*"]},
        {"name": "web", "lang": "en", "match_source": ["web-*"]}]}})  # from decontaminate
    sources = ["pile/PG-19", "pile/Books3", "pile/Pile-CC", "pile", "pile/Books30", "web-1", None]
    batch = pa.RecordBatch.from_pydict({"source": sources, "lang": ["en"] * len(sources), "text": ["t"] * len(sources)})
    taken = assign(cfg.sections["mix"], "stage:ingest", batch)
    assert taken.source.tolist() == [0, 0, 1, -1, 1, -1, -1]
    assert taken.other_input.tolist() == [False] * 5 + [True, False]
