"""Oracle: our rule sets decide as datatrove 0.10.1's own filters do, on real documents.

English: every document of ../shared/data/text and ../shared/data/jsonl that language ID calls
English goes through datatrove's GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter and
FineWebQualityFilter (defaults, spaCy's blank English tokenizer) and through ours; the keep/drop
decisions must agree on at least 99% of documents, and the kept text (C4 rewrites it) must be the
same. Chinese: the ChineseWebText sample through both, with FineWeb-2's exact cmn_Hani settings
(datatrove's `zho_Hani` tokenizer: spaCy + jieba). Every disagreement is printed.
"""
from __future__ import annotations

import functools
import gzip
import json


from filters.chinese import (CMN_HANI_STOP_WORDS, ChineseFineWebQuality, ChineseGopherQuality, ChineseGopherRepetition,
                             chinese_words)
from filters.english import (PUNCTUATION, TERMINAL_PUNCTUATION, C4Quality, FineWebQuality, GopherQuality,
                             GopherRepetition, english_words)
from filters.langid import LanguageIdentifier
from filters.repetition import Doc

import datatrove.pipeline.filters as datatrove_filters  # noqa: E402  (dev extra: must be installed)
from datatrove.data import Document  # noqa: E402


@functools.lru_cache(maxsize=1)
def _english_documents_of(shared_data) -> tuple[tuple[str, str], ...]:
    identifier = LanguageIdentifier()
    docs = []
    for path in sorted((shared_data / "text").glob("en-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            docs += [(f"{path.name}:{i}", json.loads(line)["text"]) for i, line in enumerate(f)]
    for path in sorted((shared_data / "jsonl").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            docs += [(f"{path.name}:{i}", json.loads(line)["text"]) for i, line in enumerate(f)]
    return tuple((name, text) for name, text in docs if identifier.identify(text).lang == "en")


def _english_documents(shared_data) -> list[tuple[str, str]]:
    return list(_english_documents_of(shared_data))


def _datatrove_verdict(chain, text: str) -> tuple[str | None, str]:
    doc = Document(text=text, id="oracle")
    for step in chain:
        result = step.filter(doc)
        if result is not True:
            return f"{type(step).__name__}:{result[1] if isinstance(result, tuple) else ''}", doc.text
    return None, doc.text


def _our_verdict(rule_sets, tokenize, text: str) -> tuple[str | None, str]:
    doc, signals = Doc(text, tokenize), {}
    for rule_set in rule_sets:
        rejection = rule_set.judge(doc, signals)
        if rejection is not None:
            return rejection.reason, doc.text
    return None, doc.text


def _agreement(docs, theirs, ours) -> float:
    disagreements = 0
    for name, text in docs:
        (their_reason, their_text), (our_reason, our_text) = theirs(text), ours(text)
        same = (their_reason is None) == (our_reason is None) and (our_reason is not None or their_text == our_text)
        if not same:
            disagreements += 1
            print(f"DISAGREE {name}: datatrove {their_reason or 'keeps'}, ours {our_reason or 'keeps'}"
                  + ("" if their_reason or our_reason else " (different kept text)"))
    print(f"{len(docs) - disagreements}/{len(docs)} documents agree")
    return 1 - disagreements / len(docs)


def test_punctuation_tables_are_datatroves():
    from datatrove.utils.text import PUNCTUATION as DT_PUNCTUATION, TERMINAL_PUNCTUATION as DT_TERMINAL

    assert PUNCTUATION == frozenset(DT_PUNCTUATION)
    assert TERMINAL_PUNCTUATION == frozenset(DT_TERMINAL)


def test_english_rules_agree_with_datatrove(shared_data):
    docs = _english_documents(shared_data)
    assert len(docs) >= 150
    chain = [datatrove_filters.GopherRepetitionFilter(), datatrove_filters.GopherQualityFilter(),
             datatrove_filters.C4QualityFilter(), datatrove_filters.FineWebQualityFilter()]
    ours = [GopherRepetition(), GopherQuality(), C4Quality(), FineWebQuality()]
    assert _agreement(docs, lambda t: _datatrove_verdict(chain, t),
                      lambda t: _our_verdict(ours, english_words, t)) >= 0.99


def test_english_words_are_spacys(shared_data):
    """Chunk-cached tokens, fast paths included, equal spaCy's on whole texts."""
    import spacy

    from filters import english

    english._chunk_tokens().clear()  # every chunk goes through the cold path
    nlp = spacy.blank("en")
    docs = _english_documents(shared_data)
    with open(shared_data / "langid/lingua-en.jsonl", encoding="utf-8") as f:
        docs += [("lingua-en", json.loads(line)["text"]) for line in f]
    for name, text in docs:
        nlp.max_length = len(text) + 10
        expected = [t.text.strip() for t in nlp.tokenizer(text) if t.text.strip()]
        assert list(english_words(text)) == expected, name


def test_chinese_rules_agree_with_datatrove_under_fineweb2_settings(shared_data):
    with open(shared_data / "jsonl/chinesewebtext-cc-2021-43-zh.jsonl", encoding="utf-8") as f:
        docs = [(f"chinesewebtext:{i}", json.loads(line)["raw_content"]) for i, line in enumerate(f)]
    language = "zho_Hani"
    chain = [
        datatrove_filters.GopherRepetitionFilter(
            language=language, dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0, dup_line_frac=0.287,
            top_n_grams=((2, 0.256), (3, 0.201), (4, 0.171)),
            dup_n_grams=((5, 0.198), (6, 0.182), (7, 0.167), (8, 0.154), (9, 0.14), (10, 0.127))),
        datatrove_filters.FineWebQualityFilter(language=language, short_line_thr=999, char_duplicates_ratio=0.1,
                                               line_punct_thr=0.106, new_line_ratio=0.178),
        datatrove_filters.GopherQualityFilter(language=language, max_avg_word_length=5, min_avg_word_length=1,
                                              stop_words=CMN_HANI_STOP_WORDS, max_non_alpha_words_ratio=0.735,
                                              min_stop_words=2)]
    # Ours with FineWeb-2's values where our shipped defaults deviate (filters/chinese.py says why).
    ours = [ChineseGopherRepetition(repeat_char_ngram=0), ChineseFineWebQuality(line_punct_min_lines=1),
            ChineseGopherQuality(min_doc_words=50, max_non_alpha_words_ratio=0.735, line_rules_min_lines=1)]
    assert _agreement(docs, lambda t: _datatrove_verdict(chain, t),
                      lambda t: _our_verdict(ours, chinese_words, t)) >= 0.99


def test_chinese_words_are_jiebas(shared_data):
    import jieba

    with open(shared_data / "text/zh-wiki-cmrc2018.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][:200]
    texts.append("2.4km的路程，1958-1965年，text-align属性与T恤")
    same = sum(chinese_words(t) == [w.strip() for w in jieba.lcut(t) if w.strip()] for t in texts)
    assert same >= 0.99 * len(texts)
