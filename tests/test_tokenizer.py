"""The shared tokenizer: special ids, exact round trip on every shared document and crawl page,
the training file format, the stage (balanced sample from the mix, held-out figures), `eval`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.runner import run_stage
from pipeline.stages.mix import DEFAULT_STAGE, MixStage
from pipeline.stage import StageStats
from pipeline.stages.tokenizer import TokenizerStage, empty_sample_reason, training_error_hint
from tokenizer.special_tokens import SPECIAL_TOKENS
from tokenizer.spm import load, load_proto
from tokenizer.train import TrainSettings, split_long_line, train, write_training_lines

from conftest import make_run_config, write_finished_stage

TRICKY = [
    "def f(x):\n\tif x:\n\t\treturn  x   # two, three spaces\n",
    "床前明月光，\n疑是地上霜。\n\n  举头望明月，\u3000低头思故乡。",
    "Emoji 😀👍🏽 and rare Han 𠀀𪚥䶵 and full-width ＡＢＣ１２３！？（）",
    "a literal \u2581 mark, \u2581\u2581 twice, and at the end \u2581",
    "[MASK] [gMASK] <sop> <eop> <eos> <pad> stay text",
    "\r\nwindows\r\nlines\r\n\x00nul\x0bvt\x0cff  ",
    "",
    " leading space and trailing newline\n",
]


def shared_documents(shared_data: Path) -> list[dict]:
    docs = []
    for path in sorted((shared_data / "text").glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            d = json.loads(line)
            docs.append({"id": d["id"], "text": d["text"], "lang": d["lang"], "source": path.stem})
    return docs


def crawl_pages(shared_data: Path) -> list[str]:
    """Text of every document the ingest readers get out of the shared crawl and JSONL dumps."""
    from pipeline.ingest import read_file
    from pipeline.ingest.events import Document
    from pipeline.ingest.jsonl import FieldMap

    texts = []
    for path in sorted(shared_data.glob("crawl/**/*")) + sorted(shared_data.glob("jsonl/*")):
        if path.is_file() and not path.name.startswith("LICENSE"):
            fields = FieldMap(text="raw_content") if "chinesewebtext" in path.name else FieldMap()
            texts += [e.text for e in read_file(str(path), "auto", fields, 64 << 20) if isinstance(e, Document)]
    return texts


@pytest.fixture(scope="module")
def tiny_model(shared_data, tmp_path_factory) -> str:
    """A small tokenizer trained with the project's settings on a slice of the shared text (trained
    once per test session: the encode tests use it too)."""
    tmp = tmp_path_factory.getbasetemp() / "tiny-tokenizer"
    if not (tmp / "tiny.model").exists():
        tmp.mkdir(exist_ok=True)
        sample = tmp / "sample.txt"
        with sample.open("w", encoding="utf-8") as f:
            for d in shared_documents(shared_data)[::12]:
                write_training_lines(d["text"], f, 8192)
        (tmp / "tiny.model").write_bytes(train(TrainSettings(vocab_size=1500, character_coverage=0.98), str(sample)))
    return str(tmp / "tiny.model")


def test_special_tokens_at_fixed_ids(tiny_model):
    tok = load(tiny_model)
    tok.check_special_tokens()
    assert {i: tok.piece(i) for i in range(8)} == SPECIAL_TOKENS
    assert tok.piece(8) == "\n" and tok.piece(9) == "\t"
    assert tok.encode("[MASK]") != [3], "special strings in raw text must stay text"
    assert tok.sp.unk_id() not in tok.encode("😀 𠀀 \u2581")


def test_exact_round_trip_everywhere(tiny_model, shared_data):
    tok = load(tiny_model)
    texts = TRICKY + [d["text"] for d in shared_documents(shared_data)] + crawl_pages(shared_data)
    assert len(texts) > 2700
    bad = [t[:80] for t in texts if tok.decode(tok.encode(t)) != t]
    assert not bad, f"{len(bad)} of {len(texts)} texts changed in a round trip, e.g. {bad[:3]}"
    assert tok.encode_batch(TRICKY) == [tok.encode(t) for t in TRICKY]


def test_training_lines_keep_every_byte():
    line = ("一二三四五六七八九十" * 800) + " tail " + ("word " * 3000)
    text = f"first line\n\n{line}\n   \nlast"
    import io

    buf = io.StringIO()
    written = write_training_lines(text, buf, max_line_bytes=4000)
    lines = buf.getvalue().split("\n")[:-1]
    assert all(len(x.encode()) <= 4000 for x in lines)
    assert "".join(lines) == "first line" + line + "last"
    assert written == len(("first line" + line + "last").encode())
    assert split_long_line("short", 10) == ["short"]


def test_stage_balanced_sample_and_heldout_figures(tmp_path, engines, shared_data):
    docs = [d for d in shared_documents(shared_data)[::3] if d["source"] != "en-books-gutenberg"]
    rows = [{"id": d["id"], "text": d["text"], "lang": d["lang"], "source": "web", "source_offset": i}
            for i, d in enumerate(docs)]
    sections = {
        "mix": {"target_tokens": 10_000_000, "max_epochs": 2, "sources": [
            {"name": "web_en", "lang": "en", "match_source": ["web"]},
            {"name": "web_zh", "lang": "zh", "match_source": ["web"]}]},
        "tokenizer": {"vocab_size": 2500, "character_coverage": 0.98, "sample_bytes": 400_000,
                      "heldout_bytes": 60_000},
    }
    cfg = make_run_config(tmp_path, sections)
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, rows)
    mix = run_stage(MixStage(cfg), engines["spark"])
    summary = run_stage(TokenizerStage(cfg), engines["spark"])
    beam_cfg = make_run_config(tmp_path / "beam", sections, engine="beam")
    shutil.copytree(Path(cfg.run.workdir) / "mix", Path(beam_cfg.run.workdir) / "mix")
    run_stage(TokenizerStage(beam_cfg), engines["beam"])
    assert (Path(beam_cfg.run.workdir) / "tokenizer" / "tokenizer.model").read_bytes() == \
        (Path(cfg.run.workdir) / "tokenizer" / "tokenizer.model").read_bytes(), "same model on both engines"
    out = Path(cfg.run.workdir) / "tokenizer"
    tok = load(str(out / "tokenizer.model"))
    tok.check_special_tokens()
    assert (out / "tokenizer.vocab").read_text().count("\n") == tok.vocab_size
    assert summary["dropped"]["tokenizer_mix_repeat"]["docs"] == mix["created"]["docs"] > 0
    rep = summary["report"]
    by_lang = rep["sample_bytes_by_language"]
    assert by_lang["en"] == by_lang["zh"] == 200_000
    assert abs(summary["kept"]["bytes"] - 400_000) < 100_000  # drawn by hash: close to the budget
    for lang in ("en", "zh"):
        figures = rep["heldout_eval"]["languages"][lang]
        assert figures["exact_round_trip"] == 1.0 and figures["unk_tokens"] == 0
        assert figures["docs"] > 0
    assert rep["heldout_eval"]["vocab_split"]["han"] > 100 and rep["heldout_eval"]["vocab_split"]["latin"] > 100
    heldout_ids = {r["id"] for f in storage.expand(str(out / "heldout")) for r in pq.read_table(f).to_pylist()}
    assert len(heldout_ids) == summary["dropped"]["tokenizer_heldout"]["docs"]


def test_eval_command(tiny_model, shared_data, tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "eval.json"
    code = main(["tokenizer", "eval", "--model", tiny_model, "--data",
                 str(shared_data / "text" / "en-speeches-sotu.jsonl"), str(shared_data / "text" / "zh-wiki-cmrc2018.jsonl"),
                 "--limit", "300", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    en, zh = result["languages"]["en"], result["languages"]["zh"]
    assert en["docs"] == 20 and zh["docs"] == 280
    assert en["tokens_per_word"] > 1 and zh["tokens_per_char"] > 0.5
    assert "100.00%" in capsys.readouterr().out  # the table, with the exact round-trip share


def test_training_is_deterministic(tmp_path, shared_data):
    """The same sample and settings give the same model bytes (no temporary path inside); BPE too
    keeps the special ids and the exact round trip."""
    sample = tmp_path / "sample.txt"
    with sample.open("w", encoding="utf-8") as f:
        for d in shared_documents(shared_data)[::40]:
            write_training_lines(d["text"], f, 8192)
    settings = TrainSettings(vocab_size=1200, character_coverage=0.98)
    assert train(settings, str(sample)) == train(settings, str(sample))
    bpe = load_proto(train(TrainSettings(vocab_size=1200, character_coverage=0.98, model_type="bpe"), str(sample)))
    bpe.check_special_tokens()
    assert all(bpe.decode(bpe.encode(t)) == t for t in TRICKY)


def test_stage_says_which_language_is_missing(tmp_path, spark_session_engine):
    from pipeline.config import ConfigError
    from test_mix import make_docs

    cfg = make_run_config(tmp_path, {"mix": {"target_tokens": 1000, "language_shares": {"en": 1.0, "zh": 0.0},
                                             "sources": [{"name": "web", "lang": "en"}]},
                                     "tokenizer": {"vocab_size": 500}})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, make_docs("web", "en", 20, 200), files=1)
    run_stage(MixStage(cfg), spark_session_engine)
    with pytest.raises(ConfigError, match="tokenizer.language_shares.*no zh documents"):
        run_stage(TokenizerStage(cfg), spark_session_engine)


@pytest.mark.parametrize("shares, expected", [
    ({"en": 0.2, "zh": 0.6, "fr": 0.2}, {"en": 0.2, "zh": 0.6, "fr": 0.2}),
    ({"en": 0.3333, "zh": 0.3333, "fr": 0.3333}, {"en": 1 / 3, "zh": 1 / 3, "fr": 1 / 3}),  # as mix's shares
    ({"en": 0.7, "zh": 0.7}, "expected shares that sum to 1"),
    ({"en": 1.0, "zh": 0.0}, r"expected shares > 0"),  # a language given no sample bytes is left out instead
    ({"en": float("nan"), "zh": 0.5}, "expected one language or more, each with a finite share"),
    ({}, "expected one language or more, each with a finite share"),
])
def test_language_shares_follow_the_mix_rule(tmp_path, shares, expected):
    from pipeline.config import ConfigError

    def config():
        return make_run_config(tmp_path, {"tokenizer": {"language_shares": shares}}).section("tokenizer")

    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=f"config.yaml: tokenizer: language_shares: {expected}"):
            config()
    else:
        assert config().language_shares == pytest.approx(expected, rel=1e-15)


def test_training_errors_say_what_to_change(tmp_path):
    """A sample too small for the vocabulary: not SentencePiece's advice to go below the config's minimum.
    An empty sample: not SentencePiece's INTERNAL check."""
    settings = TrainSettings(vocab_size=300, num_threads=1)
    tiny, empty = tmp_path / "tiny.txt", tmp_path / "empty.txt"
    with tiny.open("w", encoding="utf-8") as f:
        write_training_lines("hello world 你好世界", f, 8192)
    with pytest.raises(RuntimeError) as err:
        train(settings, str(tiny))
    hint = training_error_hint(str(err.value), settings)
    assert hint.startswith("the sample is too small for tokenizer.vocab_size 300: SentencePiece finds only 278 pieces")
    assert "tokenizer.heldout_bytes" in hint and "cannot go below 300" in hint and "Please set" not in hint
    with empty.open("w", encoding="utf-8") as f:
        write_training_lines(" \n\t\n", f, 8192)
    with pytest.raises(RuntimeError, match="the training sample is empty"):
        train(settings, str(empty))


def test_stage_says_why_the_training_sample_is_empty(tmp_path, spark_session_engine):
    from pipeline.config import ConfigError
    from test_mix import make_docs

    docs = [{**d, "text": " \n\u3000 "} for d in make_docs("web", "en", 10, 100) + make_docs("web", "zh", 10, 100)]
    cfg = make_run_config(tmp_path, {"mix": {"target_tokens": 1000, "sources": [
                                         {"name": "web_en", "lang": "en", "match_source": ["web"]},
                                         {"name": "web_zh", "lang": "zh", "match_source": ["web"]}]},
                                     "tokenizer": {"vocab_size": 500}})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, docs, files=1)
    run_stage(MixStage(cfg), spark_session_engine)
    with pytest.raises(ConfigError, match=r"the training sample is empty: of the mix's \d+ documents, \d+ drawn but "
                       r"empty or whitespace only; \d+ held out"):
        run_stage(TokenizerStage(cfg), spark_session_engine)


def _stats(read: int, drawn: int = 0, **dropped: tuple[int, int]) -> StageStats:
    stats = StageStats()
    stats.input.add(read, 0)
    stats.kept.add(drawn, 0)
    for reason, (docs, nbytes) in dropped.items():
        stats.dropped[f"tokenizer_{reason}"].add(docs, nbytes)
    return stats


@pytest.mark.parametrize("stats, limited_by, named, not_named", [
    # nothing upstream: no tokenizer setting is the cause
    (_stats(0), None, ["the mix wrote no documents"], ["heldout_bytes", "sample_bytes"]),
    # none drawn, none held out: the sample size, not the held-out share
    (_stats(20, not_sampled=(20, 2000)), None, ["raise tokenizer.sample_bytes"], ["heldout_bytes"]),
    # none drawn because another language's text sets the size: more of it, not a larger sample_bytes
    (_stats(20, not_sampled=(15, 1500), heldout=(5, 500)), "zh",
     ["give the mix more zh text", "lower tokenizer.heldout_bytes (5 documents, 500 bytes held out)"], ["sample_bytes"]),
    # every document held out
    (_stats(4, heldout=(4, 400)), None, ["lower tokenizer.heldout_bytes (4 documents, 400 bytes held out)"],
     ["sample_bytes", "documents with text"]),
    # drawn, but blank, and nothing else: the text
    (_stats(3, drawn=3), None, ["give the mix documents with text (the 3 drawn have none)"],
     ["heldout_bytes", "sample_bytes"]),
    # only repeats and languages without a share (the census refuses this before, kept as a fallback)
    (_stats(2, mix_repeat=(1, 10), other_language=(1, 10)), None, ["languages of tokenizer.language_shares"],
     ["heldout_bytes", "sample_bytes"]),
], ids=["nothing upstream", "none drawn", "a language sets the size", "all held out", "drawn but blank", "fallback"])
def test_empty_sample_advice_names_only_what_could_be_the_cause(stats, limited_by, named, not_named):
    reason = empty_sample_reason(stats, limited_by) if limited_by else empty_sample_reason(stats)
    advice = reason.split("SentencePiece needs lines of text")[-1]
    assert all(n in advice for n in named), advice
    assert not any(n in advice for n in not_named), advice


def test_stage_with_nothing_held_out_does_not_advise_the_held_out_share(tmp_path, spark_session_engine):
    from pipeline.config import ConfigError
    from test_mix import make_docs

    docs = make_docs("web", "en", 10, 100) + make_docs("web", "zh", 10, 100)
    cfg = make_run_config(tmp_path, {"mix": {"target_tokens": 1000, "sources": [
                                         {"name": "web_en", "lang": "en", "match_source": ["web"]},
                                         {"name": "web_zh", "lang": "zh", "match_source": ["web"]}]},
                                     "tokenizer": {"vocab_size": 500, "sample_bytes": 1, "heldout_bytes": 0}})
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, docs, files=1)
    run_stage(MixStage(cfg), spark_session_engine)
    with pytest.raises(ConfigError, match=r"the training sample is empty: of the mix's \d+ documents, .*; 20 not drawn") as err:
        run_stage(TokenizerStage(cfg), spark_session_engine)
    assert str(err.value).endswith("SentencePiece needs lines of text: raise tokenizer.sample_bytes.")


def test_second_pass_keeps_the_model_the_mix_counted_with(tmp_path, spark_session_engine, shared_data, tiny_model):
    """mix.count_tokens_with: the tokenizer stage takes that model instead of training again, so encode
    writes exactly the tokens the mix planned with."""
    from pipeline.stages.encode import EncodeStage

    docs = [d for d in shared_documents(shared_data)[::10] if d["source"] != "en-books-gutenberg"]
    rows = [{"id": d["id"], "text": d["text"], "lang": d["lang"], "source": "web"} for d in docs]
    cfg = make_run_config(tmp_path, {
        "mix": {"target_tokens": 300_000, "max_epochs": 2, "count_tokens_with": tiny_model, "sources": [
            {"name": "web_en", "lang": "en", "match_source": ["web"]},
            {"name": "web_zh", "lang": "zh", "match_source": ["web"]}]},
        "tokenizer": {"vocab_size": 2500, "heldout_bytes": 20_000},
    })
    write_finished_stage(cfg.run.workdir, DEFAULT_STAGE, rows)
    mix = run_stage(MixStage(cfg), spark_session_engine)["report"]
    tokenizer = run_stage(TokenizerStage(cfg), spark_session_engine)["report"]
    encode = run_stage(EncodeStage(cfg), spark_session_engine)["report"]
    assert (Path(cfg.run.workdir) / "tokenizer" / "tokenizer.model").read_bytes() == Path(tiny_model).read_bytes()
    assert not tokenizer["trained"] and tokenizer["taken_from"] == tiny_model and tokenizer["sample_bytes"] == 0
    assert all(f["exact_round_trip"] == 1.0 for f in tokenizer["heldout_eval"]["languages"].values())
    assert mix["token_counts"] == "exact"
    for lang in ("en", "zh"):
        assert encode["languages"][lang]["tokens"] == mix["languages"][lang]["achieved_tokens"] > 0


def test_max_line_bytes_below_one_character_is_a_config_error(tmp_path):
    """Below 4 bytes a line of 4-byte characters could never be cut: the cutting loop ran forever."""
    from pipeline.config import ConfigError
    from tokenizer.train import split_long_line

    with pytest.raises(ConfigError, match="config.yaml: tokenizer.max_line_bytes: expected an integer >= 4"):
        make_run_config(tmp_path, {"tokenizer": {"max_line_bytes": 3}}).section("tokenizer")
    with pytest.raises(ValueError, match="at least 4"):
        split_long_line("\U0001F600" * 3, 3)
    assert split_long_line("\U0001F600" * 3, 4) == ["\U0001F600"] * 3
