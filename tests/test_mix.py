"""mix: token targets per language and source, epoch caps, shortfall warnings, deterministic
sampling independent of partitioning, both engines, optional upstream columns."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.runner import run_stage
from pipeline.schema import DOC_SCHEMA
from pipeline.stages.mix import DEFAULT_STAGE, Census, MixStage, merge_census, repeated_rows, solve_coefficient
from tokenizer.spm import load

from conftest import make_run_config, write_finished_stage
from test_tokenizer import tiny_model  # noqa: F401 (fixture: a small model trained on the shared text)


def make_docs(source: str, lang: str, n: int, size: int, **columns) -> list[dict]:
    """`n` documents of about `size` UTF-8 bytes."""
    unit = "word " if lang == "en" else "中文"
    docs = []
    for i in range(n):
        text = f"{source} {i} " + unit * (size // len(unit.encode()))
        doc = {"id": f"{source}:{i}", "text": text, "source": source, "source_file": f"{source}.jsonl",
               "source_offset": i, "lang": lang, "lang_score": 0.99}
        doc.update({k: v(i) for k, v in columns.items()})
        docs.append(doc)
    return docs


def out_rows(cfg, stage="mix") -> list[dict]:
    files = [f for f in storage.expand(f"{cfg.run.workdir}/{stage}/data") if f.endswith(".parquet")]
    return sorted((r for f in files for r in pq.read_table(f).to_pylist()), key=lambda r: r["id"])


def mix_section(**overrides) -> dict:
    section = {
        "target_tokens": 100_000,
        "bytes_per_token": {"en": 4.0, "zh": 3.0},
        "max_epochs": 4,
        "sources": [{"name": "web_en", "lang": "en"}, {"name": "web_zh", "lang": "zh"}],
    }
    section.update(overrides)
    return section


CORPUS = make_docs("web_en", "en", 1000, 400) + make_docs("web_zh", "zh", 300, 300)


def test_targets_repeats_and_report(tmp_path, spark_session_engine):
    cfg = make_run_config(tmp_path, {"mix": mix_section()})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, CORPUS, files=3)
    summary = run_stage(MixStage(cfg), spark_session_engine)
    rep = summary["report"]
    # en has 1000 * ~100 tokens: 50k asks half an epoch. zh has 300 * ~100: 50k asks ~1.7 epochs.
    for lang in ("en", "zh"):
        lv = rep["languages"][lang]
        assert abs(lv["achieved_tokens"] - 50_000) / 50_000 < 0.05, lv
    assert rep["sources"]["web_zh"]["epochs"] > 1.4 and rep["sources"]["web_en"]["epochs"] < 0.6
    rows = out_rows(cfg)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "repeated documents need unique row ids"
    repeats = [r for r in rows if r["mix_repeat"] > 0]
    assert repeats and all(r["id"].endswith(f"#{r['mix_repeat']}") and r["mix_source"] == "web_zh" for r in repeats)
    assert summary["created"]["docs"] == len(repeats)
    assert 400 < summary["dropped"]["mix_not_sampled"]["docs"] < 600  # about half of en is not drawn
    assert summary["kept"]["docs"] == len(rows)
    assert not rep["warnings"]
    assert rep["token_counts"] == "estimated" and rep["languages"]["en"]["measured_bytes_per_token"] is None


def test_exact_counts_from_a_tokenizer_model(tmp_path, engines, tiny_model):  # noqa: F811
    """The second pass of the two-pass mix: mix.count_tokens_with counts every candidate document
    with the model on the engine, so the plan and the report use exact counts, not the (here
    deliberately wrong: 1 byte per token) estimate; the same rows on both engines."""
    tok = load(tiny_model)
    docs = CORPUS[::4]
    exact = {name: sum(len(tok.encode(d["text"])) for d in docs if d["source"] == name) for name in ("web_en", "web_zh")}
    drawn = {}
    for engine, parts in (("spark", 1), ("beam", 3)):
        section = mix_section(target_tokens=20_000, bytes_per_token={"en": 1.0, "zh": 1.0}, count_tokens_with=tiny_model)
        cfg = make_run_config(tmp_path / engine, {"mix": section}, engine=engine)
        write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, docs, files=parts)
        rep = run_stage(MixStage(cfg), engines[engine])["report"]
        assert rep["token_counts"] == "exact" and rep["count_tokens_with"] == tiny_model
        for name, tokens in exact.items():
            sv = rep["sources"][name]
            assert (sv["available_tokens"], sv["exact_token_docs"], sv["token_counts"]) == (tokens, sv["available_docs"], "exact")
        rows = out_rows(cfg)
        for lang in ("en", "zh"):
            lv = rep["languages"][lang]
            assert lv["achieved_tokens"] == sum(len(tok.encode(r["text"])) for r in rows if r["lang"] == lang)
            # Planned with the real counts (the estimate would give ~1/4 of the target in English).
            assert abs(lv["achieved_tokens"] - 10_000) / 10_000 < 0.25, lv
            assert lv["measured_bytes_per_token"] > 1.5
        drawn[engine] = [(r["id"], r["mix_repeat"]) for r in rows]
    assert drawn["spark"] == drawn["beam"]


def test_count_tokens_with_the_tokenizer_stages_own_model_is_refused(tmp_path):
    """That file is rewritten after every new mix, so the mix would never stay finished."""
    model = tmp_path / "out" / "tokenizer" / "tokenizer.model"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"model")
    cfg = make_run_config(tmp_path, {"mix": mix_section(count_tokens_with=str(model))})
    with pytest.raises(ConfigError, match="mix.count_tokens_with: expected a copy"):
        MixStage(cfg)


def test_count_tokens_with_a_file_that_is_no_model(tmp_path, spark_session_engine):
    model = tmp_path / "tokenizer.model"
    model.write_bytes(b"not a model")
    cfg = make_run_config(tmp_path, {"mix": mix_section(count_tokens_with=str(model))})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, CORPUS[:10], files=1)
    with pytest.raises(ConfigError, match="count_tokens_with: expected a SentencePiece model.*tokenizer.model"):
        run_stage(MixStage(cfg), spark_session_engine)


def test_shortfall_is_a_warning_with_numbers(tmp_path, spark_session_engine, caplog):
    cfg = make_run_config(tmp_path, {"mix": mix_section(target_tokens=400_000, max_epochs=2)})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, CORPUS, files=1)
    with caplog.at_level(logging.WARNING):
        rep = run_stage(MixStage(cfg), spark_session_engine)["report"]
    shortfall = [w for w in rep["warnings"] if w.startswith("shortfall in zh")]
    assert shortfall and "of 200,000 target tokens" in shortfall[0]
    assert any("shortfall in zh" in r.getMessage() for r in caplog.records)
    assert rep["sources"]["web_zh"]["epochs"] == pytest.approx(2.0, abs=0.01)  # every zh doc exactly twice


def test_same_rows_on_any_partitioning_and_both_engines(tmp_path, engines):
    ids = {}
    for parts, engine in ((1, "spark"), (3, "beam")):
        cfg = make_run_config(tmp_path / f"{engine}{parts}", {"mix": mix_section()}, engine=engine)
        write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, CORPUS, files=parts)
        run_stage(MixStage(cfg), engines[engine])
        ids[(parts, engine)] = [(r["id"], r["mix_repeat"], r["text"]) for r in out_rows(cfg)]
    first = ids[(1, "spark")]
    assert all(v == first for v in ids.values())


def test_census_totals_do_not_depend_on_the_order_files_arrive_in(tmp_path):
    """Token estimates (bytes / bytes_per_token) are fractions: summed as floats, the files' totals
    differ in their last bits with the order the engine returns them, and so may the coefficient."""
    section = MixStage(make_run_config(tmp_path, {"mix": mix_section(
        bytes_per_token={"en": 3.7, "zh": 2.9}, weight_column="q_score", weight_exponent=1.0)})).section
    schema = pa.schema([*DOC_SCHEMA, ("q_score", pa.float64())])
    results = []
    for k in range(12):
        docs = (make_docs("web_en", "en", 7 + k, 37 * k + 11, q_score=lambda i: 0.05 + (i * 7 + k) % 19 / 10)
                + make_docs("web_zh", "zh", 5 + k, 23 * k + 7, q_score=lambda i: 1.0))
        path = tmp_path / f"part-{k}.parquet"
        pq.write_table(pa.Table.from_pylist([{c: d.get(c) for c in schema.names} for d in docs], schema), path)
        results.append(Census(section)(("stage:" + DEFAULT_STAGE, str(path))))
    totals = [merge_census(order)[0] for order in (results, results[::-1], results[1::2] + results[::2])]
    assert totals[0] == totals[1] == totals[2]
    # the plan adds the bins up in their order: the same order, the same coefficient to the last bit
    assert len(totals[0]["web_en"]["bins"]) > 5
    assert len({tuple(t["web_en"]["bins"].items()) for t in totals}) == 1
    assert len({solve_coefficient(t["web_en"]["bins"], 12_345.6, 3.0) for t in totals}) == 1


def test_sources_from_stages_and_paths_with_optional_columns(tmp_path, spark_session_engine):
    """A curated dump straight from ingest (no q_* or dup_* columns) beside deduplicated web text;
    weighting by a quality signal; a capped source's shortfall is made up by its language's other."""
    work = tmp_path / "out"
    dedup = make_docs("cc", "zh", 100, 300, q_score=lambda i: 0.05 if i % 2 else 0.95, dup_cluster_size=lambda i: 1)
    dedup += make_docs("cc", "en", 100, 400, q_score=lambda i: 0.5, dup_cluster_size=lambda i: 2)
    write_finished_stage(str(work), "dedup", dedup, files=2)
    wudao = make_docs("wudao", "zh", 20, 300)
    for d in wudao:
        d["lang"] = None  # a curated dump that never went through langid
    crawl_in_ingest = make_docs("cc", "zh", 5, 300)  # the crawl before dedup: the mix takes it from dedup
    write_finished_stage(str(work), "ingest", wudao + crawl_in_ingest, files=1)
    pile = tmp_path / "pile"
    pile.mkdir()
    pq.write_table(pa.Table.from_pylist(make_docs("pile", "en", 50, 400), DOC_SCHEMA), pile / "pile.parquet")
    section = mix_section(target_tokens=30_000, weight_column="q_score", weight_exponent=1.0, sources=[
        {"name": "cc_en", "lang": "en", "stage": "dedup", "match_source": ["cc"]},
        {"name": "pile", "lang": "en", "path": str(pile / "*.parquet"), "weight": 1.0},
        {"name": "cc_zh", "lang": "zh", "stage": "dedup", "match_source": ["cc"]},
        {"name": "wudao", "lang": "zh", "stage": "ingest", "weight": 3.0, "max_epochs": 1},
    ])
    cfg = make_run_config(tmp_path, {"mix": section})
    stage = MixStage(cfg)
    assert stage.upstream == "dedup" and stage.depends_on == ("ingest",)
    summary = run_stage(stage, spark_session_engine)
    rep = summary["report"]
    assert summary["dropped"]["mix_taken_from_other_input"]["docs"] == 5
    assert "mix_no_source" not in summary["dropped"] and not any("match no mix source" in w for w in rep["warnings"])
    assert rep["sources"]["wudao"]["epochs"] == pytest.approx(1.0)  # capped at one epoch
    assert any("'wudao' (zh) is capped" in w for w in rep["warnings"])
    assert abs(rep["languages"]["zh"]["achieved_tokens"] - 15_000) / 15_000 < 0.1  # cc_zh made up the rest
    rows = out_rows(cfg)
    cc_zh = [r for r in rows if r["mix_source"] == "cc_zh"]
    high = sum(1 for r in cc_zh if r["q_score"] > 0.5)
    assert high > 5 * (len(cc_zh) - high), "high-quality documents are drawn far more often"
    assert {r["mix_source"] for r in rows if r["q_score"] is None} == {"pile", "wudao"}
    assert set(pq.read_schema(storage.expand(f"{cfg.run.workdir}/mix/data")[0]).names) >= {
        "q_score", "dup_cluster_size", "mix_source", "mix_repeat"}


def test_unmatched_documents_are_counted(tmp_path, spark_session_engine):
    docs = CORPUS + make_docs("forum", "en", 10, 100) + make_docs("web_en", "fr", 5, 100)
    cfg = make_run_config(tmp_path, {"mix": mix_section()})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, docs, files=1)
    summary = run_stage(MixStage(cfg), spark_session_engine)
    assert summary["dropped"]["mix_no_source"]["docs"] == 15
    assert summary["report"]["unmatched"]["forum|en"]["docs"] == 10
    assert summary["report"]["unmatched"]["web_en|fr"]["docs"] == 5


def test_documents_without_text_are_neither_drawn_nor_repeated(tmp_path, spark_session_engine):
    """A curated dump with null and empty texts, in a mix that repeats every document 4 times: those
    are counted under mix_no_text, not written 4 times nor counted as available documents."""
    docs = make_docs("web_en", "en", 20, 400) + make_docs("web_zh", "zh", 20, 300)
    docs[0]["text"], docs[1]["text"], docs[20]["text"] = None, "", None
    cfg = make_run_config(tmp_path, {"mix": mix_section()})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, docs, files=1)
    summary = run_stage(MixStage(cfg), spark_session_engine)
    assert summary["dropped"]["mix_no_text"] == {"docs": 3, "bytes": 0}
    assert summary["kept"]["docs"] == 4 * 37 and all(r["text"] for r in out_rows(cfg))
    sources = summary["report"]["sources"]
    assert (sources["web_en"]["available_docs"], sources["web_zh"]["available_docs"]) == (18, 19)
    assert not summary["report"]["unmatched"]


def test_a_language_share_of_zero(tmp_path, spark_session_engine, capsys):
    """Every zh document stays undrawn, and the terminal table shows "-" for its 0% of 0 target."""
    cfg = make_run_config(tmp_path, {"mix": mix_section(language_shares={"en": 1.0, "zh": 0.0})})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, CORPUS, files=2)
    summary = run_stage(MixStage(cfg), spark_session_engine)
    assert {r["lang"] for r in out_rows(cfg)} == {"en"} and not summary["report"]["warnings"]
    assert summary["report"]["languages"]["zh"]["target_tokens"] == 0
    assert "nan" not in capsys.readouterr().err


def test_solve_coefficient():
    bins = {"0": 100.0, "32": 100.0}  # weights 1 and 2
    c = solve_coefficient(bins, 150.0, cap=4.0)
    assert c == pytest.approx(0.5, rel=1e-6)  # 100 * 0.5 + 100 * 1.0
    assert solve_coefficient(bins, 10_000.0, cap=4.0) * 1 >= 4.0  # everything capped


def test_solve_coefficient_with_weights_far_apart():
    """Weights 2**-256 and 2**256: the coefficient that draws 150 of the heavy documents' 100 tokens
    (1.5 epochs); halving hi - lo from 0 stopped 2**157 away from it."""
    bins = {"-8192": 100.0, "8192": 100.0}
    assert solve_coefficient(bins, 150.0, cap=4.0) == pytest.approx(1.5 * 2.0 ** -256, rel=1e-9)


@pytest.mark.parametrize("value, exponent", [(float("inf"), 1.0), (1e30, 20.0)])  # q is float32
def test_weights_that_overflow_are_clipped(tmp_path, spark_session_engine, value, exponent):
    """A weight column holding inf, or values whose power overflows, once crashed the plan
    (OverflowError, ZeroDivisionError); such documents now weigh 2**256 and are drawn first."""
    docs = [d for source, lang, size in (("web_en", "en", 400), ("web_zh", "zh", 300))
            for d in make_docs(source, lang, 60, size, q=lambda i: value if i % 3 == 0 else 1.0)]
    cfg = make_run_config(tmp_path, {"mix": mix_section(target_tokens=4_000, weight_column="q",
                                                          weight_exponent=exponent)})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, docs, files=2)
    rep = run_stage(MixStage(cfg), spark_session_engine)["report"]
    assert all(abs(lv["achieved_tokens"] - 2_000) < 200 for lv in rep["languages"].values())
    assert all(r["q"] > 1 for r in out_rows(cfg))  # 20 heavy documents of ~100 tokens per language


def test_a_document_drawn_many_times_is_written_in_slices(tmp_path, spark_session_engine):
    """Ten documents drawn 2,000 times each: the 20,000 rows are written a few thousand at a time,
    not as one table of every repeat of the batch."""
    docs = make_docs("web_en", "en", 5, 400) + make_docs("web_zh", "zh", 5, 300)
    cfg = make_run_config(tmp_path, {"mix": mix_section(target_tokens=10**9, max_epochs=2_000)})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, docs, files=1)
    summary = run_stage(MixStage(cfg), spark_session_engine)
    assert summary["kept"]["docs"] == 20_000 and summary["created"]["docs"] == 20_000 - 10
    (part,) = storage.expand(f"{cfg.run.workdir}/mix/data")
    meta = pq.ParquetFile(part).metadata
    assert max(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) <= 4096
    repeats = pq.read_table(part, columns=["id", "mix_repeat"]).to_pylist()
    assert sorted(r["mix_repeat"] for r in repeats if r["id"].startswith("web_zh:3")) == list(range(2_000))


def test_copies_of_a_document_are_not_written_side_by_side(tmp_path, spark_session_engine):
    """Shards pack encode's rows in order: a document followed by its own copies would share one
    packed sequence, where the model copies what it has just read. In one batch, repeat k and repeat
    k + 1 of a document are at least as many rows apart as there are rows of repeat k + 1."""
    cfg = make_run_config(tmp_path, {"mix": mix_section()})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, CORPUS, files=1)
    run_stage(MixStage(cfg), spark_session_engine)
    (part,) = storage.expand(f"{cfg.run.workdir}/mix/data")
    rows = pq.read_table(part, columns=["id", "mix_repeat"]).to_pylist()
    at: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        at.setdefault(r["id"].split("#")[0], []).append(i)
    gaps = [b - a for places in at.values() for a, b in zip(places, places[1:])]
    copies = sum(r["mix_repeat"] == 1 for r in rows)
    assert copies > 100 and min(gaps) >= copies


@pytest.mark.parametrize("repeats", [[0, 3, 1, 0, 2, 3, 1], [5] * 3, [0, 0], [3_001, 1], []])
def test_repeated_rows_copy_by_copy_in_slices(repeats):
    repeats = np.array(repeats, dtype=np.int64)
    pieces = list(repeated_rows(repeats, 4))
    assert all(0 < len(rows) <= 4 for rows, _ in pieces)
    rows = np.concatenate([r for r, _ in pieces]) if pieces else np.zeros(0, np.int64)
    index = np.concatenate([k for _, k in pieces]) if pieces else np.zeros(0, np.int32)
    assert sorted(zip(rows.tolist(), index.tolist())) == [(i, k) for i, n in enumerate(repeats.tolist())
                                                          for k in range(n)]
    order = np.lexsort((rows, index))  # by repeat index, then row
    assert np.array_equal(order, np.arange(len(rows)))


@pytest.mark.parametrize("bad, message", [
    ({"language_shares": {"en": 0.7, "zh": 0.7}}, "sum to 1"),
    ({"language_shares": {"en": float("nan"), "zh": 0.5}}, "language_shares: expected one language or more, each with a finite"),
    ({"bytes_per_token": {"en": float("inf"), "zh": 3.0}}, "bytes_per_token must be finite"),
    ({"sources": [{"name": "a", "lang": "fr"}]}, "not in language_shares"),
    ({"sources": [{"name": "a", "lang": "en", "stage": "dedup", "path": "gs://bucket/pile/*.parquet"}]}, "not both"),
    ({"target_tokens": "lots"}, "mix.target_tokens: expected int"),
    ({"max_epochs": 1e300}, "max_epochs must be > 0 and <= 2147483647"),  # mix_repeat is an int32
    ({"sources": [{"name": "a", "lang": "en", "max_epochs": 3e9}]}, "source 'a': max_epochs must be > 0 and <="),
    ({"sources": [{"name": "a", "lang": "en", "stage": "dedupe"}]}, "not a stage before mix"),
    ({"language_shares": {"en": 0.5, "zh": 0.45}},
     r"config.yaml: mix: language_shares: expected shares that sum to 1 \(within 0.01: shares written to 2 decimal "
     r"places.*which sum to 0.95"),
    ({"language_shares": {"en": -0.5, "zh": 1.5}}, "expected shares >= 0"),
    ({"sources": [{"name": "", "lang": "en"}]}, r"config.yaml: mix.sources\[0\]: name: expected the source's name"),
    ({"sources": [{"name": "a", "lang": "en", "match_source": []}]},
     r"mix.sources\[0\]: source 'a': match_source: expected a list of `source` values or patterns, none of them empty"),
    ({"sources": [{"name": "a", "lang": "en", "match_source": ["pile", " "]}]}, "none of them empty"),
])
def test_config_errors_name_the_key(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        make_run_config(tmp_path, {"mix": mix_section(**bad)})


def thirds_section(share: float) -> dict:
    """A mix of three languages, each given `share`."""
    languages = ("en", "zh", "fr")
    return mix_section(language_shares={lang: share for lang in languages},
                       bytes_per_token={lang: 4.0 for lang in languages},
                       sources=[{"name": f"web_{lang}", "lang": lang} for lang in languages])


@pytest.mark.parametrize("share", [0.3333, 0.33])
def test_language_shares_rounded_to_decimals_are_taken_as_meant(tmp_path, share):
    cfg = make_run_config(tmp_path, {"mix": thirds_section(share)})
    assert cfg.section("mix").language_shares == pytest.approx({lang: 1 / 3 for lang in ("en", "zh", "fr")}, rel=1e-15)


@pytest.mark.parametrize("section, rerun", [(mix_section(), False), (thirds_section(0.3333333), True)])
def test_scaled_language_shares_rerun_a_mix_only_where_they_change(tmp_path, monkeypatch, section, rerun):
    """The section hash reads the scaled shares, so scaling needs no output_version: a mix finished before
    it (shares taken as written, the same output_version otherwise) re-runs where it changes a share (three
    of 0.3333333 passed the float tolerance), not on shares it leaves alone."""
    from pipeline.stages import mix

    today = MixStage(make_run_config(tmp_path, {"mix": section})).config_hash()
    monkeypatch.setattr(mix, "normalised_shares", lambda shares: shares)
    assert (MixStage(make_run_config(tmp_path, {"mix": section})).config_hash() != today) == rerun


def test_recipes_validate():
    from conftest import REPO
    from pipeline.stages import load_config

    glm = load_config(REPO / "configs" / "glm130b.yaml")
    mix = glm.section("mix")
    assert mix.target_tokens == 400_000_000_000 and mix.language_shares == {"en": 0.5, "zh": 0.5}
    assert [(s.name, s.lang, s.stage) for s in mix.sources] == [
        ("pile", "en", "ingest"), ("wudao", "zh", "ingest"), ("web_zh", "zh", "decontaminate")]
    stage = MixStage(glm)
    assert stage.upstream == "ingest" and stage.depends_on == ("decontaminate",)
    assert glm.section("tokenizer").vocab_size == 130_000
    demo = load_config(REPO / "configs" / "demo.yaml")
    assert demo.section("mix").sources[0].match_source == ["*"]
