"""Test inputs for the shards and Megatron export tests (no tests here): a small SentencePiece model
trained on the shared real text, real documents encoded with it, and encode-like workdirs
(`<workdir>/encode/data/part-*.parquet` with id, lang, source, tokens, n_tokens, and
`<workdir>/tokenizer/tokenizer.model`) with the _SUCCESS markers the runner reads."""
from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenizer.special_tokens import NUM_SPECIAL

TEXT_FILES = {"en": "en-news-scrapinghub.jsonl", "zh": "zh-wiki-cmrc2018.jsonl"}
DOCS_PER_LANG = 120
VOCAB_SIZE = 4000

ENCODED_SCHEMA = pa.schema([("id", pa.string()), ("lang", pa.string()), ("source", pa.string()),
                            ("tokens", pa.list_(pa.int32())), ("n_tokens", pa.int64())])


def real_texts(shared_data: Path) -> list[dict]:
    """The first DOCS_PER_LANG documents of one English and one Chinese file of shared/data/text."""
    docs = []
    for lang, name in TEXT_FILES.items():
        with open(shared_data / "text" / name, encoding="utf-8") as f:
            for line, _ in zip(f, range(DOCS_PER_LANG)):
                row = json.loads(line)
                docs.append({"id": row["id"], "lang": lang, "source": name.split(".")[0], "text": row["text"]})
    return docs


@functools.lru_cache(maxsize=1)
def _tokenizer_model(shared_data: str) -> str:
    from tokenizer.train import TrainSettings, train, write_training_lines

    folder = Path(tempfile.mkdtemp(prefix="glmdata-test-spm-"))
    corpus = folder / "train.txt"
    with open(corpus, "w", encoding="utf-8") as out:
        for doc in real_texts(Path(shared_data)):
            write_training_lines(doc["text"], out, 4096)
    model = folder / "spm.model"
    model.write_bytes(train(TrainSettings(vocab_size=VOCAB_SIZE, num_threads=1), str(corpus)))
    return str(model)


def tokenizer_model(shared_data: Path) -> str:
    """A SentencePiece model with the project's special tokens, trained once per test session."""
    return _tokenizer_model(str(shared_data))


def real_documents(shared_data: Path) -> list[dict]:
    """Real English and Chinese documents encoded with `tokenizer_model` (encode's row layout)."""
    from tokenizer.spm import load

    tok = load(tokenizer_model(shared_data))
    docs = real_texts(shared_data)
    ids = tok.encode_batch([d["text"] for d in docs])
    return [{"id": d["id"], "lang": d["lang"], "source": d["source"], "tokens": t, "n_tokens": len(t)}
            for d, t in zip(docs, ids)]


def random_documents(n: int, seed: int, vocab_size: int = VOCAB_SIZE, max_len: int = 400) -> list[dict]:
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        tokens = rng.integers(NUM_SPECIAL, vocab_size, int(rng.integers(1, max_len))).tolist()
        docs.append({"id": f"rand-{seed}-{i}", "lang": "en" if i % 3 else "zh", "source": f"random{i % 2}",
                     "tokens": tokens, "n_tokens": len(tokens)})
    return docs


def bad_documents(vocab_size: int = VOCAB_SIZE) -> list[dict]:
    """Rows the shards stage must drop, one per reason."""
    return [
        {"id": "bad-empty", "lang": "en", "source": "bad", "tokens": [], "n_tokens": 0},
        {"id": "bad-special", "lang": "en", "source": "bad", "tokens": [100, 3, 101], "n_tokens": 3},
        {"id": "bad-vocab", "lang": "zh", "source": "bad", "tokens": [100, vocab_size + 5], "n_tokens": 2},
    ]


def write_marker(stage_dir: Path, name: str) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "_SUCCESS").write_text(json.dumps(
        {"stage": name, "config_hash": f"test-{name}", "input_fingerprint": "test"}))


def make_encoded_workdir(workdir: Path, model_file: str, docs: list[dict], parts: int = 3,
                         row_group_size: int = 40) -> Path:
    """An encode-like workdir: `docs` split over `parts` Parquet files with small row groups."""
    (workdir / "tokenizer").mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, workdir / "tokenizer" / "tokenizer.model")
    write_marker(workdir / "tokenizer", "tokenizer")
    data = workdir / "encode" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for p, chunk in enumerate(np.array_split(np.arange(len(docs)), parts)):
        table = pa.Table.from_pylist([docs[i] for i in chunk], ENCODED_SCHEMA)
        pq.write_table(table, data / f"part-{p:05d}.parquet", row_group_size=row_group_size, compression="zstd")
    write_marker(workdir / "encode", "encode")
    return workdir


def expected_stream(docs: list[dict], vocab_size: int = VOCAB_SIZE) -> np.ndarray:
    """The token stream the shards stage builds: valid documents in order, each followed by <eos>."""
    from tokenizer.special_tokens import EOS

    out = []
    for d in docs:
        t = d["tokens"]
        if t and min(t) >= NUM_SPECIAL and max(t) < vocab_size:
            out += list(t) + [EOS]
    return np.asarray(out, dtype=np.int32)


def reconstruct_samples(sample: dict) -> list[np.ndarray]:
    """The original stream tokens of each sample of one sequence: Part A with every [MASK] replaced
    by the span its Part B piece predicts, or a [gMASK] prefix followed by the generated suffix."""
    from tokenizer.special_tokens import GMASK, MASK, SOP

    seg, tokens, targets = sample["segment_ids"], sample["tokens"], sample["targets"]
    prefix, pos = sample["prefix"].astype(bool), sample["position_ids"]
    out = []
    for s in range(1, int(seg.max()) + 1):
        idx = np.flatnonzero(seg == s)
        a = tokens[idx][prefix[idx]]
        b_idx = idx[~prefix[idx]]
        if sample["kind"] == "gMASK":
            assert a[-1] == GMASK
            out.append(np.concatenate([a[:-1], targets[b_idx]]))
            continue
        spans = {}
        starts = b_idx[tokens[b_idx] == SOP]
        ends = np.append(starts[1:], b_idx[-1] + 1) if len(starts) else starts
        for lo, hi in zip(starts.tolist(), ends.tolist()):
            spans[int(pos[lo])] = targets[lo:hi - 1]  # span + <eop> -> span
        pieces = [spans[i] if t == MASK else [t] for i, t in enumerate(a.tolist())]
        out.append(np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32))
    return out
