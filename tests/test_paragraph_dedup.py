"""Cross-document paragraph dedup inside the dedup stage, on Spark and Beam: lines found in more
surviving documents than the limit are removed, duplicates do not inflate the counts, documents
left too short are dropped with a reason, and the report names what was removed."""
from __future__ import annotations

import random

import pyarrow.parquet as pq

from filters.normalize import to_traditional
from filters.paragraphs import paragraph_keys, remove_paragraphs
from pipeline import storage
from pipeline.dedup.fixtures import read_dedup_output, write_finished_upstream
from pipeline.runner import run_stage
from pipeline.stage import StageStats
from pipeline.stages.dedup import DedupStage

from conftest import make_run_config

NAV_EN = "Home | News | Sports | Weather | Contact us"
FOOTER_EN = "Copyright 2024 Example Media Group. All rights reserved."
NAV_ZH = "首页 | 新闻 | 体育 | 财经 | 联系我们"


def _article(seed: int, lang: str) -> str:
    """Four lines of text no other article shares (pseudo-random words or Han characters)."""
    rng = random.Random(seed)
    if lang == "zh":
        return "\n".join("".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(40)) + "。" for _ in range(4))
    return "\n".join(" ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
                              for _ in range(25)) + "." for _ in range(4))


def _corpus() -> list[dict]:
    docs = []
    for i in range(5):  # five unrelated English pages under one site's navigation and footer
        docs.append({"id": f"en{i}", "text": f"{NAV_EN}\n{_article(i, 'en')}\n{FOOTER_EN}", "source": "site",
                     "q_score": 0.5})
    for i in range(4):  # four Chinese pages, the navigation typed in Traditional script on one of them
        nav = to_traditional(NAV_ZH) if i == 0 else NAV_ZH
        docs.append({"id": f"zh{i}", "text": f"{nav}\n{_article(i, 'zh')}", "lang": "zh", "source": "portal",
                     "q_score": 0.5})
    # a page that is the navigation, the footer and one short line: left too short once they go
    docs.append({"id": "en-stub", "text": f"{NAV_EN}\nPage not found, sorry.\n{FOOTER_EN}", "source": "site", "q_score": 0.5})
    # six exact copies of one page with its own line: copies are not counted, the line stays
    own = "A line that only this page has, however many copies of the page were crawled."
    for i in range(6):
        docs.append({"id": f"copy{i}", "text": f"{own}\n{_article(100, 'en')}", "source": "mirror", "q_score": 0.5})
    return docs


def test_lines_on_many_pages_are_removed_on_both_engines(tmp_path, engines):
    section = {"paragraphs": {"max_docs": {"*": 3}, "min_chars": {"*": 10, "zh": 6},
                              "min_doc_chars": {"*": 200, "zh": 100}}}
    docs = _corpus()
    outputs = {}
    for name, engine in engines.items():
        cfg = make_run_config(tmp_path / name, {"dedup": section}, engine=name)
        write_finished_upstream(cfg.run.workdir, [docs[0::2], docs[1::2]], stage=DedupStage.upstream)
        summary = run_stage(DedupStage(cfg), engine)
        StageStats.from_dict(summary).check_conservation(name)
        out = read_dedup_output(storage.join(cfg.run.workdir, "dedup"))
        assert out["rejected"]["en-stub"] == ("paragraph_dedup:too_short", "22")
        assert {k for k, (r, _) in out["rejected"].items() if r == "dup_exact"} == {f"copy{i}" for i in range(1, 6)}
        texts = {r["id"]: r["text"] for r in pq.read_table(storage.join(cfg.run.workdir, "dedup", "data")).to_pylist()}
        for i in range(5):
            assert texts[f"en{i}"] == _article(i, "en")  # navigation and footer gone, the article whole
        for i in range(4):
            assert texts[f"zh{i}"] == _article(i, "zh")  # the Traditional copy of the menu too
        assert texts["copy0"].startswith("A line that only this page has")
        report = summary["report"]["paragraph_dedup"]
        assert report["lines_removed"] == 5 * 2 + 2 + 4 and report["documents_rewritten"] == 10
        assert report["documents_left_too_short"] == 1
        removed = report["bytes_removed_by_source_lang"]
        assert removed["site"]["en"] == 6 * len(f"{NAV_EN}\n".encode()) + 6 * len(f"\n{FOOTER_EN}".encode())
        assert set(removed) == {"site", "portal"}
        top = [(r["documents"], r["line"]) for r in report["top_removed"]]
        assert set(top[:2]) == {(6, NAV_EN), (6, FOOTER_EN)} and top[2][0] == 4 and len(top) == 3
        outputs[name] = (out, texts, summary["extra"]["paragraph_keys_removed"])
    assert outputs["spark"] == outputs["beam"]


def test_paragraph_keys_see_through_case_digits_punctuation_and_script():
    a = paragraph_keys("Share this story!\n第1页 共10页", "zh", 4)
    assert paragraph_keys("SHARE THIS STORY\n第2頁 共11頁", "zh", 4) == a  # digits fold, Traditional -> Simplified
    assert paragraph_keys("OK", "en", 4) == []  # too short to judge
    text, removed = remove_paragraphs("keep me, I am prose.\nShare this story!\nand me.", "en",
                                      set(paragraph_keys("share this story", "en", 4)), 4)
    assert text == "keep me, I am prose.\nand me." and [line for _, line in removed] == ["Share this story!"]


def test_config_needs_a_default_language(tmp_path):
    import pytest

    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=r'max_docs: needs a "\*" entry'):
        DedupStage(make_run_config(tmp_path, {"dedup": {"paragraphs": {"max_docs": {"en": 3}}}}))
