"""Decontamination: the Chinese n-gram size, recall on planted benchmark items, false positives on
clean news, and throughput per core against a plain Python n-gram set lookup.

    .venv/bin/python bench/decontam.py [--data ../shared/data] [--items 400]

Benchmarks, as a user would point the stage at them: the CMRC 2018 passages (a CLUE reading-
comprehension benchmark; ../shared/data/text/zh-wiki-cmrc2018.jsonl) cut into sentences of 15-80
characters, the length of C-Eval / CLUE items; for English, sentences of 12-60 words of the State of
the Union addresses. Clean corpus: THUCNews (Chinese) and the scrapinghub news (English), which share
no text with either. Planted: `--items` benchmark sentences put into clean news documents verbatim,
with ASCII punctuation and extra spaces, in Traditional script, with a prefix and suffix cut
(the middle 70% kept), and with one character in 20 deleted.

    .venv/bin/python bench/decontam.py --mixed [--against OLD.py] [--repeat 5]

English items holding Chinese words (State of the Union sentences given one, spaced or joined to the
English in the ways below, or three joined by Chinese punctuation, or one in the other script than the
page's), each quoted in a THUCNews page labelled zh (joined to its Chinese, no space) and in an English
news page: recall per way, documents flagged in the clean files of ../shared/data/text by an index of
all of them, and `find`'s CPU time on each of those files with them and the benchmarks above in one
index. `--against` runs an earlier filters/decontam.py too (`git show REV:filters/decontam.py > OLD.py`),
alternating, in the same process.

    .venv/bin/python bench/decontam.py --digits [--against OLD.py] [--repeat 5]

Chinese items made mostly of digits (the CMRC sentences above of which at least 30% are digits: dates,
figures), in Simplified and in Traditional, each quoted in an English news page and in a Chinese page
(THUCNews for Simplified, DRCD for Traditional): found per way; and answer-like items, every
"YYYY年M月D日" date of the CMRC passages, which a page may state without quoting any benchmark: how many
are too short to detect. Then, as with --mixed, `find` on each clean file with both in one index with the
benchmarks above, and the documents flagged by either; and on the English news pages each given a place
name in Chinese (an English page holding a few CJK characters and its numbers), with an index of a
curated benchmark's kind: the CMRC sentences without ASCII letters or digits, and the English ones.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import filters.decontam  # noqa: E402
from filters.decontam import BenchmarkItem, ContaminationIndex  # noqa: E402
from filters.fast_normalize import normalize_chinese, normalize_words  # noqa: E402
from filters.normalize import fold_punctuation, to_traditional  # noqa: E402

ZH_SIZES = (8, 10, 13, 16, 20)


def read(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def zh_items(data: Path) -> list[str]:
    sentences = (s for t in read(data / "text/zh-wiki-cmrc2018.jsonl") for s in re.split(r"(?<=[。！？])", t))
    return sorted({s.strip() for s in sentences if 15 <= len(s.strip()) <= 80})


def en_items(data: Path) -> list[str]:
    sentences = (s for t in read(data / "text/en-speeches-sotu.jsonl") for s in re.split(r"(?<=[.!?])\s+", t))
    return sorted({s.strip() for s in sentences if 12 <= len(s.split()) <= 60})


def edits(text: str, lang: str, rng: random.Random) -> dict[str, str]:
    """The copies of one item a page might carry."""
    cut = len(text) * 15 // 100
    return {
        "verbatim": text,
        "punctuation": re.sub(r"(?<=[,.;:，。；：、])", " ", text.translate(str.maketrans("，。；：！？", ",.;:!?"))),
        "traditional": to_traditional(text) if lang == "zh" else text.upper(),
        "middle_70pct": text[cut:len(text) - cut],
        "drop_1_in_20": "".join(c for i, c in enumerate(text) if i % 20 != 19),
    }


def plant(news: list[str], items: list[str], lang: str, n: int, seed: int) -> list[tuple[str, str, int]]:
    """(document text, edit name, item number) for `n` items, each edit planted in its own news document."""
    rng = random.Random(seed)
    out = []
    for k in rng.sample(range(len(items)), n):
        for name, copy in edits(items[k], lang, rng).items():
            host = rng.choice(news)
            at = rng.randint(0, len(host))
            out.append((host[:at] + "\n" + copy + "\n" + host[at:], name, k))
    return out


def measure(index: ContaminationIndex, news: list[str], planted, lang: str) -> tuple[float, dict[str, float]]:
    flagged = sum(bool(f) for f in index.find(news, [lang] * len(news)))
    found = index.find([t for t, _, _ in planted], [lang] * len(planted))
    recall: dict[str, list[int]] = {}
    for (_, name, k), items in zip(planted, found):
        recall.setdefault(name, []).append(k in items)
    return flagged / len(news), {name: sum(v) / len(v) for name, v in recall.items()}


def plain_set_lookup(items: list[str], lang: str, n: int):
    """The baseline: normalized n-grams as Python strings in a set, every document n-gram looked up."""
    norm = normalize_chinese if lang == "zh" else normalize_words

    def grams(text: str) -> list[str]:
        s = norm(text)
        if lang == "zh":
            s = s.replace(" ", "")
            return [s[i:i + n] for i in range(len(s) - n + 1)]
        w = s.split()
        return [" ".join(w[i:i + n]) for i in range(len(w) - n + 1)]

    index = {g for t in items for g in grams(t)}
    return lambda docs: [any(g in index for g in grams(d)) for d in docs]


def cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


CHINESE_WORDS = ["关系", "面子", "画蛇添足", "中国", "人工智能"]


def mixed_forms(sentence: str, rng: random.Random) -> dict[str, tuple[str, str]]:
    """(item, what a page quotes) per way an English item may hold Chinese: a word spaced or joined to
    the English at a random place, three joined by Chinese punctuation, a word in the other script."""
    words, word = sentence.split(), rng.choice(CHINESE_WORDS)
    at = rng.randint(1, len(words) - 1)

    def glued(before: str, middle: str, glue_next: bool = False) -> str:
        w = list(words)
        w[at - 1] += before + middle
        if glue_next:
            w[at - 1] += w.pop(at)
        return " ".join(w)
    spaced = " ".join(words[:at] + [word] + words[at:])
    other_script = " ".join(words[:at] + [rng.choice([w for w in CHINESE_WORDS if to_traditional(w) != w])] + words[at:])
    return {"spaced": (spaced, spaced),
            "quote-glued": (glued("'", word + "'"),) * 2,
            "curly-quotes-glued": (glued("“", word + "”", glue_next=True),) * 2,
            "no-mark": (glued("", word, glue_next=True),) * 2,
            "parentheses-glued": (glued("(", word + ")"),) * 2,
            "zh-punctuation": (" ".join(words[:at] + ["，".join(rng.sample(CHINESE_WORDS, 3)) + "。"] + words[at:]),) * 2,
            "traditional-item/t2s-page": (to_traditional(other_script), other_script),
            "simplified-item/traditional-page": (other_script, to_traditional(other_script))}


def quote_in(host: str, text: str, rng: random.Random) -> str:
    """`text` put into `host` between two characters that are no ASCII letters or digits."""
    places = [i for i in range(1, len(host)) if not (host[i - 1].isascii() and host[i - 1].isalnum())
              and not (host[i].isascii() and host[i].isalnum())] or [0]
    at = rng.choice(places)
    return host[:at] + text + host[at:]


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location("decontam_against", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def host_pages(args) -> tuple[list[str], list[str], list[str]]:
    """The pages items are quoted in: THUCNews, the English news, DRCD (Traditional)."""
    return tuple(read(args.data / "text" / f) for f in ("zh-news-thucnews.jsonl", "en-news-scrapinghub.jsonl",
                                                       "zh-hant-wiki-drcd.jsonl"))


def against(args) -> dict:
    return {"this": filters.decontam} | ({"before": load_module(args.against)} if args.against else {})


def digits_script(args, en_bench: list[str], zh_bench: list[str]) -> None:
    rng = random.Random(4)
    items = [t for t in zh_bench if sum(c.isdigit() for c in t) >= 0.3 * len(t)]
    dates = sorted({d for t in read(args.data / "text/zh-wiki-cmrc2018.jsonl") for d in re.findall(r"\d{4}年\d{1,2}月\d{1,2}日", t)})
    zh_news, en_news, drcd = host_pages(args)
    ways = {"Simplified in en page": (items, en_news, "en"), "in THUCNews page": (items, zh_news, "zh"),
            "Traditional in en page": ([to_traditional(t) for t in items], en_news, "en"),
            "in DRCD page": ([to_traditional(t) for t in items], drcd, "zh")}
    pages = {way: [quote_in(rng.choice(pool), t, rng) for t in quoted] for way, (quoted, pool, _) in ways.items()}
    modules = against(args)
    print(f"Chinese items mostly digits: {len(items)} CMRC sentences of which at least 30% are digits, found of "
          f"{len(items)} each way; answer-like: {len(dates)} dates of the CMRC passages, too short to detect")
    for label, m in modules.items():
        index = m.ContaminationIndex([m.BenchmarkItem("b", k, t, "zh") for k, t in enumerate(items)])
        cells = [f"{way} {sum(k in f for k, f in enumerate(index.find(pages[way], [lang] * len(items))))}"
                 for way, (_, _, lang) in ways.items()]
        too_short = len(m.ContaminationIndex([m.BenchmarkItem("d", k, t, "zh") for k, t in enumerate(dates)]).too_short)
        print(f"  {label}: " + ", ".join(cells) + f"; dates too short {too_short}")
    clean_files(args, modules, [(t, "zh") for t in items + dates], "those items and dates", en_bench, zh_bench)
    named = [t + " (Beijing 北京)" for t in en_news]
    plain_zh = [t for t in zh_bench if not re.search("[A-Za-z0-9]", t)]
    mb = sum(len(t.encode()) for t in named) / 1e6
    indexes = {label: m.ContaminationIndex([m.BenchmarkItem("sotu", k, t, "en") for k, t in enumerate(en_bench)]
                                           + [m.BenchmarkItem("cmrc", k, t, "zh") for k, t in enumerate(plain_zh)])
               for label, m in modules.items()}
    best, _ = timed_find(indexes, named, "en", args.repeat)
    print(f"English news pages naming Beijing in Chinese ({len(named)}), index: {len(en_bench)} en and "
          f"{len(plain_zh)} zh items without ASCII letters or digits: "
          + "; ".join(f"{label} {mb / t:.1f} MB/s" for label, t in best.items()) + time_ratio(best))


def mixed_script(args, en_bench: list[str], zh_bench: list[str]) -> None:
    rng = random.Random(3)
    sentences = [t for t in en_bench if len(t.split()) <= 40]
    forms = [mixed_forms(t, rng) for t in rng.sample(sentences, args.items)]
    names = list(forms[0])
    zh_news, en_news, drcd = host_pages(args)
    pages = {}
    for name in names:
        hosts = drcd if "traditional-page" in name else zh_news
        pages[name] = ([quote_in(rng.choice(hosts), f[name][1], rng) for f in forms],
                       [f"{rng.choice(en_news)}\n{f[name][1]}\n{rng.choice(en_news)}" for f in forms])
    modules = against(args)
    print(f"English items holding Chinese: {args.items} State of the Union sentences of 12-40 words each way, "
          f"found in a zh page / an en page quoting them")
    for label, m in modules.items():
        cells = []
        for name in names:
            index = m.ContaminationIndex([m.BenchmarkItem("b", k, f[name][0], "en") for k, f in enumerate(forms)])
            zh_found, en_found = (index.find(p, [lang] * len(p)) for p, lang in zip(pages[name], ("zh", "en")))
            zh_hits, en_hits = (sum(k in f for k, f in enumerate(found)) for found in (zh_found, en_found))
            cells.append(f"{name} {zh_hits}/{en_hits}")
        print(f"  {label}: " + ", ".join(cells))
    clean_files(args, modules, [(f[name][0], "en") for f in forms for name in names], "the mixed items above",
                en_bench, zh_bench)


def clean_files(args, modules: dict, added: list[tuple[str, str]], what: str, en_bench: list[str],
                zh_bench: list[str]) -> None:
    """`find`'s CPU time on each clean file of the data with an index of the `added` (text, lang) items
    and both benchmarks, per module, and the documents holding an added item."""
    text = args.data / "text"
    files = [(f, "zh" if f.name.startswith("zh-") else "en") for f in sorted(text.glob("*.jsonl"))
             if "cmrc" not in f.name and "sotu" not in f.name]  # the benchmarks' own text
    print(f"find, CPU seconds best of {args.repeat} (MB/s), and documents flagged; index: {what}, "
          f"{len(en_bench)} en and {len(zh_bench)} zh benchmark items")
    indexes = {label: m.ContaminationIndex([m.BenchmarkItem("added", k, t, lang) for k, (t, lang) in enumerate(added)]
                                           + [m.BenchmarkItem("sotu", k, t, "en") for k, t in enumerate(en_bench)]
                                           + [m.BenchmarkItem("cmrc", k, t, "zh") for k, t in enumerate(zh_bench)])
               for label, m in modules.items()}
    for path, lang in files:
        docs = read(path)
        mb = sum(len(t.encode()) for t in docs) / 1e6
        best, found = timed_find(indexes, docs, lang, args.repeat)
        flagged = {label: sum(any(index.items[k].benchmark == "added" for k in f) for f in found[label])
                   for label, index in indexes.items()}
        cells = [f"{label} {mb / best[label]:.1f} MB/s, {flagged[label]} flagged" for label in indexes]
        print(f"  {path.name} ({lang}, {len(docs)} docs): " + "; ".join(cells) + time_ratio(best))


def timed_find(indexes: dict, docs: list[str], lang: str, repeat: int) -> tuple[dict, dict]:
    """Per index: `find`'s best CPU seconds of `repeat` runs over `docs` in batches of 256, the indexes
    alternated, and what it found."""
    batches = [docs[i:i + 256] for i in range(0, len(docs), 256)]
    best, found = dict.fromkeys(indexes, float("inf")), {}
    for _ in range(repeat):
        for label, index in indexes.items():
            found[label] = []
            best[label] = min(best[label], cpu(lambda: found[label].extend(
                f for batch in batches for f in index.find(batch, [lang] * len(batch)))))
    return best, found


def time_ratio(best: dict) -> str:
    return f" ({best['this'] / best['before']:.2f}x the time)" if "before" in best else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--items", type=int, default=400, help="benchmark items planted per language (per way: --mixed)")
    ap.add_argument("--mixed", action="store_true", help="only English items holding Chinese (see above)")
    ap.add_argument("--digits", action="store_true", help="only Chinese items made mostly of digits (see above)")
    ap.add_argument("--against", type=Path, help="with --mixed or --digits: an earlier filters/decontam.py to run too")
    ap.add_argument("--repeat", type=int, default=5, help="with --mixed or --digits: times find runs on each file")
    args = ap.parse_args()

    zh_bench, en_bench = zh_items(args.data), en_items(args.data)
    if args.mixed:
        return mixed_script(args, en_bench, zh_bench)
    if args.digits:
        return digits_script(args, en_bench, zh_bench)
    zh_news, en_news = read(args.data / "text/zh-news-thucnews.jsonl"), read(args.data / "text/en-news-scrapinghub.jsonl")
    zh_planted = plant(zh_news, zh_bench, "zh", args.items, seed=1)
    en_planted = plant(en_news, en_bench, "en", min(args.items, len(en_bench)), seed=2)
    zh_index_items = [BenchmarkItem("cmrc2018", k, t, "zh") for k, t in enumerate(zh_bench)]
    en_index_items = [BenchmarkItem("sotu", k, t, "en") for k, t in enumerate(en_bench)]

    print(f"Chinese: {len(zh_bench)} benchmark items (CMRC 2018 sentences) vs {len(zh_news)} THUCNews documents; "
          f"{args.items} items planted 5 ways")
    names = list(edits("x", "zh", random.Random(0)))
    print(f"{'n':>3} {'news flagged':>13}  " + "  ".join(f"{n:>13}" for n in names))
    for n in ZH_SIZES:
        index = ContaminationIndex(zh_index_items, zh_ngram=n, zh_min_tokens=min(10, n))
        fp, recall = measure(index, zh_news, zh_planted, "zh")
        print(f"{n:>3} {fp:>13.4f}  " + "  ".join(f"{recall[k]:>13.3f}" for k in names))

    index = ContaminationIndex(en_index_items)
    fp, recall = measure(index, en_news, en_planted, "en")
    print(f"\nEnglish (word 13-grams): {len(en_bench)} items (State of the Union sentences) vs {len(en_news)} news "
          f"documents: news flagged {fp:.4f}; recall " + ", ".join(f"{k} {v:.3f}" for k, v in recall.items()))

    print("\nthroughput, one core, CPU seconds (benchmark index built beforehand):")
    for lang, bench, news, n in (("zh", zh_bench, zh_news * 3, 13), ("en", en_bench, en_news * 3, 13)):
        items = [BenchmarkItem("b", k, t, lang) for k, t in enumerate(bench)]
        index = ContaminationIndex(items)
        baseline = plain_set_lookup(bench, lang, n)
        mb = sum(len(t.encode()) for t in news) / 1e6
        ours = cpu(lambda: [index.find(news[i:i + 256], [lang] * len(news[i:i + 256])) for i in range(0, len(news), 256)])
        base = cpu(lambda: baseline(news))
        print(f"  {lang}: ours {mb / ours:6.1f} MB/s, plain set lookup {mb / base:6.1f} MB/s: {base / ours:.2f}x")


if __name__ == "__main__":
    main()
