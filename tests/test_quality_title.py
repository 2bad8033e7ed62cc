"""quality's title rule (filters/title.py): the word blocklist and the Chinese spam lexicon on the
page's title; one listed term in the title and a second on the page reject it."""
from __future__ import annotations

import pyarrow as pa

from filters.title import TitleBlocklist, TitledDoc
from pipeline.schema import DOC_SCHEMA
from pipeline.stages.quality import QualityStage

from conftest import make_run_config

PROSE = ("The harbour authority published its annual report on Monday, and the figures were better than expected.\n"
         "Container traffic rose by four percent over the year, while passenger numbers stayed about the same.\n"
         "The director said that the new crane had shortened the time ships spend waiting at the quay.\n"
         "Dredging of the eastern channel will start in the spring and should be finished before the summer.\n"
         "Local firms have welcomed the plans, which they expect to bring more work to the town over the next years.")


def judge(rule: TitleBlocklist, title: str | None, text: str = PROSE):
    signals: dict = {}
    return rule.judge(TitledDoc(text, str.split, None, None, title), signals), signals


def test_a_listed_title_term_needs_a_second_hit_on_the_page():
    rule = TitleBlocklist(words=["online casino"], spam_terms=["华体会", "必威", "betway"])
    assert judge(rule, None) == (None, {})
    rejection, signals = judge(rule, "港口年报_华体会")
    assert rejection is None and signals == {"title_word_hits": 0, "title_spam_hits": 1}
    rejection, _ = judge(rule, "港口年报_华体会", PROSE + "\n华体会")
    assert (rejection.reason, rejection.detail) == ("zh:spam_title", "2")  # hits in title and text
    assert judge(rule, "港口年報_華體會", PROSE + "\n华体会")[0].reason == "zh:spam_title"  # matched as simplified
    assert judge(rule, "港口年报_必威betway中文版")[0].reason == "zh:spam_title"  # two in the title itself
    assert judge(rule, "Harbour report - the best online casino", PROSE + "\nonline casino")[0].reason == "blocklist:title"
    assert judge(rule, "Harbour report")[0] is None
    assert judge(TitleBlocklist(spam_terms=["华体会"], min_title_hits=None), "华体会_华体会")[0] is None


def rows(titles: list[str | None], text: str = PROSE + "\nSponsored by 华体会.") -> list[dict]:
    return [{"id": f"d{i}", "text": text, "url": None, "title": title, "source": "s", "lang": "en"}
            for i, title in enumerate(titles)]


def test_the_stage_rejects_by_the_title_with_the_shipped_lexicon(tmp_path):
    batch = pa.RecordBatch.from_pylist(rows([None, "Harbour annual report", "Harbour annual report_华体会"]), DOC_SCHEMA)
    result = QualityStage(make_run_config(tmp_path / "on", {"quality": {}})).process_batch(batch)
    assert result.reasons == [None, None, "zh:spam_title"]
    assert result.rows.column("q_title_spam_hits").to_pylist()[:2] == [None, 0]
    off = QualityStage(make_run_config(tmp_path / "off", {"quality": {"title": None}})).process_batch(batch)
    assert off.reasons == [None, None, None]


def test_parts_written_without_a_title_column_are_judged(tmp_path):
    schema = pa.schema([f for f in DOC_SCHEMA if f.name != "title"])
    batch = pa.RecordBatch.from_pylist([{k: v for k, v in r.items() if k != "title"} for r in rows([None])], schema)
    assert QualityStage(make_run_config(tmp_path, {"quality": {}})).process_batch(batch).reasons == [None]
