"""The run report: built from fixture stats and Parquet made here (not from other stages), checked
for escaping and hidden samples, then opened in a real headless Chromium over the DevTools protocol:
no console error, no network request, every chart laid out and drew marks; a screenshot is saved."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.report import write_report

NASTY = '<script>alert("x")</script><img src="http://example.invalid/x.png"> spam & more'
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def _stats(stage, docs_in, kept, dropped=None, errors=None, report=None, created=0):
    dropped = dropped or {}
    errors = errors or {}
    return {"stage": stage, "engine": "spark", "seconds": 1.5, "in": {"docs": docs_in, "bytes": docs_in * 1000},
            "created": {"docs": created, "bytes": created * 1000},
            "kept": {"docs": kept, "bytes": kept * 1000},
            "dropped": {r: {"docs": n, "bytes": n * 1000} for r, n in dropped.items()},
            "errors": {r: {"docs": n, "bytes": n * 1000} for r, n in errors.items()},
            "kept_text_bytes": kept * 990, "extra": {"units": 2}, "report": report or {}}


def _docs(n, langs=("en", "zh"), cluster=False):
    rows = []
    for i in range(n):
        lang = langs[i % len(langs)]
        text = ("word " if lang == "en" else "中文字") * (3 + (i * 37) % 900)
        row = {"id": f"d{i}", "text": text, "url": f"https://example.org/{i}", "lang": lang}
        if cluster:
            row["dup_cluster_size"] = 1 + (i % 7 == 0) * (i % 40)
        rows.append(row)
    return pa.Table.from_pylist(rows)


def make_fixture_workdir(root: Path) -> Path:
    """A workdir with every stage's stats.json, documents for the histograms, rejected and error rows."""
    wd = root / "work"
    mix_report = {"languages": {"en": {"target_tokens": 5000, "achieved_tokens": 4800, "documents": 40},
                                "zh": {"target_tokens": 5000, "achieved_tokens": 3100, "documents": 38}},
                  "sources": {"news-en": {"target_tokens": 5000, "achieved_tokens": 4800, "epochs": 1.0},
                              "wiki-zh": {"target_tokens": 5000, "achieved_tokens": 3100, "epochs": 2.0}},
                  "warnings": ["zh short of its share: 3100 of 5000 tokens at the epoch cap"]}
    tok_report = {"vocab_size": 8000, "per_language": {
        "en": {"bytes_per_token": 4.1, "tokens_per_word": 1.3, "byte_fallback_rate": 0.001, "round_trip": 1.0},
        "zh": {"bytes_per_token": 2.2, "tokens_per_char": 0.7, "byte_fallback_rate": 0.004, "round_trip": 1.0}},
        "vocabulary": {"han": 3000, "latin": 4500, "other": 500}}
    shard_report = {"mask_sequences": 30, "gmask_sequences": 70,
                    "span_length_hist": {"1": 40, "2": 80, "3": 95, "4": 70, "5": 45, "6": 22, "7": 9, "10": 1},
                    "gmask_ratio_hist": [0, 0, 12, 11, 13, 10, 12, 11, 12, 9],
                    "tokens_per_language": {"en": 52000, "zh": 48000},
                    "tokens_per_source": {"news-en": 52000, "wiki-zh": 48000}}
    stats = [
        _stats("ingest", 120, 110, {"non_html": 6}, {"truncated_gzip": 4}),
        _stats("langid", 110, 100, {"lang_other": 10}),
        _stats("quality", 100, 85, {"en_gopher_min_words": 9, "zh_min_han_ratio": 6}),
        _stats("dedup", 85, 78, {"near_duplicate": 5, "exact_duplicate": 2}),
        _stats("mix", 78, 78, report=mix_report),
        _stats("tokenizer", 0, 0, report=tok_report),
        _stats("encode", 78, 78),
        _stats("shards", 78, 78, report=shard_report),
    ]
    for s in stats:
        d = wd / s["stage"]
        d.mkdir(parents=True)
        (d / "stats.json").write_text(json.dumps(s))
    for stage, n, cluster in (("langid", 100, False), ("quality", 85, False), ("dedup", 78, True), ("mix", 78, False)):
        (wd / stage / "data").mkdir()
        table = _docs(n, cluster=cluster)
        if stage == "quality":  # signal columns as the quality stage writes them (null where a rule set did not run)
            table = table.append_column("q_score", pa.array([(i % 10) / 9 for i in range(n)], pa.float64()))
            table = table.append_column("q_n_words", pa.array([None if i % 2 else 8 * (i + 1) for i in range(n)],
                                                               pa.int64()))
        pq.write_table(table.slice(0, n // 2), wd / stage / "data" / "part-00000.parquet")
        pq.write_table(table.slice(n // 2), wd / stage / "data" / "part-00001.parquet")
    rej = wd / "quality" / "rejected" / "en_gopher_min_words"
    rej.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"id": "bad1", "text": NASTY, "url": "http://spam.invalid/",
                                          "lang": "en", "reject_reason": "en_gopher_min_words",
                                          "reject_detail": "words=3"}]), rej / "part-00000.parquet")
    (wd / "ingest" / "errors").mkdir()
    pq.write_table(pa.Table.from_pylist([{"stage": "ingest", "source_file": "a.warc.gz", "source_offset": 1234,
                                          "reason": "truncated_gzip", "message": "EOFError <eof>", "bytes": 4000,
                                          "doc_id": None}]), wd / "ingest" / "errors" / "part-00000.parquet")
    (wd / "shards").joinpath("manifest.json").write_text(json.dumps({
        "format": "glm-blank-infilling", "version": 1, "seq_len": 2048, "vocab_size": 8000, "seed": 1234,
        "shards": [{"file": f"shard-{i:05d}.arrow", "samples": 10, "tokens": 20480 - 900 * i,
                    "loss_tokens": 6000 + 100 * i, "sha256": "0" * 64, "languages": {"en": 0.5, "zh": 0.5}}
                   for i in range(5)]}))
    return wd


@pytest.fixture(scope="module")
def report_page(tmp_path_factory, spark_session_engine) -> Path:
    wd = make_fixture_workdir(tmp_path_factory.mktemp("report"))
    return Path(write_report(str(wd), spark_session_engine))


def test_report_contents(report_page):
    html = report_page.read_text()
    data = json.loads((report_page.parent / "report.json").read_text())
    # Histograms came from the documents, on the engine: every langid document counted once.
    assert sum(sum(c.values()) for c in data["lengths"]["langid"].values()) == 100
    assert set(data["lengths"]) == {"langid", "quality", "dedup", "mix"}
    assert sum(data["dedup_clusters"].values()) == 78
    # Quality signals: every non-null value counted once, per language, in fixed bins.
    signals = data["quality_signals"]
    assert set(signals) == {"q_score", "q_n_words"}
    assert {lang: sum(c.values()) for lang, c in signals["q_score"].items()} == {"en": 43, "zh": 42}
    assert signals["q_score"]["zh"]["20"] == 8 and "20" not in signals["q_score"]["en"]  # 1.0: the last bin
    assert signals["q_score"]["en"]["0"] == 9  # i % 10 == 0
    quarter_octaves = Counter(str(int(np.floor(4 * np.log2(8 * (i + 1))))) for i in range(0, 85, 2))
    assert signals["q_n_words"] == {"en": dict(quarter_octaves)}
    # Hostile text is escaped, hidden in a closed <details>, and the page fetches nothing.
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "<details open" not in html
    assert "http-equiv=\"Content-Security-Policy\"" in html
    for section in ("Funnel", "Document lengths", "Quality signals", "Dedup cluster sizes", "target vs achieved", "Shards",
                    "per language", "span length hist", "[MASK] vs [gMASK]", "tokens per source",
                    "Samples of rejected documents"):
        assert section in html, section


def find_chromium() -> str:
    """Debian's chromium, installed with apt-get when absent (CI runs as root; ~40 s the first time)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing and cannot be installed (not root or no apt-get)")
        pytest.skip("chromium missing; install it with: apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], check=True, env=env)
    return shutil.which("chromium")


class DevTools:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fds 3 and 4, NUL-framed)."""

    def __init__(self, chrome: str, user_data_dir: str):
        cmd_r, self._cmd_w = os.pipe()
        self._evt_r, evt_w = os.pipe()

        def wire_fds():
            os.dup2(cmd_r, 3)
            os.dup2(evt_w, 4)

        self.proc = subprocess.Popen([chrome, *CHROME_FLAGS, f"--user-data-dir={user_data_dir}",
                                      "--remote-debugging-pipe", "about:blank"], preexec_fn=wire_fds,
                                     pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(evt_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session = None

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._evt_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.time() > deadline:
                raise TimeoutError(event)
            self.events.append(self._read())

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._cmd_w)
        os.close(self._evt_r)


RENDER_CHECK = """(() => {
  const charts = [...document.querySelectorAll('svg[data-chart]')];
  const notDrawn = charts.filter(svg => {
    const box = svg.getBoundingClientRect();
    const drawn = [...svg.querySelectorAll('.mark')].filter(m => { const b = m.getBBox(); return b.width > 0 && b.height > 0; });
    return box.width < 50 || box.height < 20 || drawn.length === 0;
  }).map(svg => svg.dataset.chart);
  const visibleSamples = [...document.querySelectorAll('details pre')].filter(p => p.checkVisibility()).length;
  return {charts: charts.length, notDrawn, details: document.querySelectorAll('details').length,
          visibleSamples, scripts: document.scripts.length, height: document.documentElement.scrollHeight};
})()"""


def test_report_renders_in_chromium(report_page, tmp_path):
    chrome = find_chromium()
    devtools = DevTools(chrome, tempfile.mkdtemp(dir=tmp_path))
    try:
        target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
        devtools.session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            devtools.call(f"{domain}.enable")
        devtools.call("Page.navigate", url=report_page.as_uri())
        devtools.wait_for("Page.loadEventFired")
        check = devtools.call("Runtime.evaluate", expression=RENDER_CHECK, returnByValue=True)["result"]["value"]
        devtools.call("Emulation.setDeviceMetricsOverride", width=1200, height=min(check["height"], 16000),
                      deviceScaleFactor=1, mobile=False)
        shot = devtools.call("Page.captureScreenshot", format="png")["data"]
        opened = devtools.call("Runtime.evaluate", returnByValue=True, expression=(
            "document.querySelectorAll('details').forEach(d => d.open = true);"
            "[...document.querySelectorAll('details pre')].filter(p => p.checkVisibility()).length"))["result"]["value"]
    finally:
        devtools.close()
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(base64.b64decode(shot))
    print(f"screenshot: {screenshot}")
    problems = [e for e in devtools.events if
                (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                or e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
                or (e.get("method") == "Network.requestWillBeSent"
                    and not e["params"]["request"]["url"].startswith(("file:", "data:", "about:")))]
    assert not problems, problems
    assert check["charts"] >= 10 and check["notDrawn"] == [], check
    assert check["scripts"] == 0
    assert check["details"] >= 2 and check["visibleSamples"] == 0, "samples must be hidden until clicked"
    assert opened >= 2, "opening the <details> shows the samples"
    assert screenshot.stat().st_size > 10_000


def test_histograms_same_on_beam(report_page, engines):
    """The distributions are engine aggregates: Beam's DirectRunner gives Spark's numbers."""
    from pipeline.report import document_histograms

    workdir = str(report_page.parent.parent)
    stages = ["langid", "quality", "dedup", "mix"]
    assert document_histograms(workdir, stages, engines["beam"]) == \
        document_histograms(workdir, stages, engines["spark"])
