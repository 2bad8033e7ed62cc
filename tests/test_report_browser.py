"""The report page and the comparison page in a real headless Chromium (DevTools protocol over a
pipe), at 1280 px and at a phone's 390 px: nothing wider than the page outside a scrolling
container, every section there, every chart drawn, samples hidden until clicked and shown as text,
no script, no console error, no network request; the comparison lists the moved documents.

Chromium comes from Debian (`make test` installs it when it runs as root and it is missing); the
test installs nothing. With CI=true a missing Chromium fails the test."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pipeline.report import collect, write_report
from pipeline.report_compare import write_comparison
from report_fixtures import make_run

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTHS = {"laptop": (1280, False), "phone": (390, True)}
SECTIONS = ["funnel", "sources", "languages", "lengths", "signals", "dedup", "shards", "samples"]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    message = "chromium is missing: apt-get install -y chromium (make test does it when run as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


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

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]

    def open(self, url: str, width: int, mobile: bool, timeout: float = 60) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=mobile)
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", url=url)
        deadline = time.time() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.time() > deadline:
                raise TimeoutError(url)
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


# Elements whose right edge passes the viewport, outside any scrolling container (a table inside
# .scroll may be wider: its container scrolls), and the page's own horizontal overflow.
OVERFLOW_CHECK = """(() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter(e => {
    if (e.closest('.scroll') && !e.classList.contains('scroll')) return false;
    const box = e.getBoundingClientRect();
    return box.width > 0 && box.right > width + 1;
  }).map(e => e.tagName + (e.className ? '.' + e.className : '') + ' ' + (e.textContent || '').slice(0, 40));
  return {width, pageWidth: document.documentElement.scrollWidth, wide};
})()"""

RENDER_CHECK = """(() => {
  const charts = [...document.querySelectorAll('svg[data-chart]')];
  const notDrawn = charts.filter(svg => {
    const box = svg.getBoundingClientRect();
    const drawn = [...svg.querySelectorAll('.mark')].filter(m => { const b = m.getBBox(); return b.width > 0 && b.height > 0; });
    return box.width < 50 || box.height < 20 || drawn.length === 0;
  }).map(svg => svg.dataset.chart);
  const visibleSamples = [...document.querySelectorAll('details pre')].filter(p => p.checkVisibility()).length;
  return {charts: charts.length, notDrawn, details: document.querySelectorAll('details').length,
          visibleSamples, scripts: document.scripts.length, images: document.images.length,
          sections: [...document.querySelectorAll('h2[id]')].map(h => h.id)};
})()"""

OPEN_ALL = """(() => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  const pres = [...document.querySelectorAll('details pre')].filter(p => p.checkVisibility());
  return {shown: pres.length, hostile: pres.filter(p => p.textContent.includes('<script>alert')).length,
          moved: document.querySelectorAll('.moved-doc').length};
})()"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser")
    a, b = make_run(root / "a", min_words=10), make_run(root / "b", min_words=30)
    report = Path(write_report(str(a)))

    import pipeline.report_compare as compare

    moved = {"quality": [{"a": "kept", "b": "en_min_words", "documents": 2, "samples": [
        {"id": "d033", "a": {"id": "d033", "text": "<script>alert(1)</script> moved text", "source": "news-en"},
         "b": {"id": "d033", "reject_detail": "words=12"}}]}]}
    original = compare.moved_documents
    compare.moved_documents = lambda *args: moved
    try:
        comparison = Path(write_comparison(collect(str(a)), collect(str(b)), lambda: None))  # the join is test_report's
    finally:
        compare.moved_documents = original
    return {"report": report, "compare": comparison}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chrome = find_chromium()
    devtools = DevTools(chrome, tempfile.mkdtemp(dir=tmp_path_factory.mktemp("chrome")))
    target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
    devtools.session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network"):
        devtools.call(f"{domain}.enable")
    yield devtools
    devtools.close()


def _problems(events: list[dict]) -> list[dict]:
    return [e for e in events if
            (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
            or e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
            or (e.get("method") == "Network.requestWillBeSent"
                and not e["params"]["request"]["url"].startswith(("file:", "data:", "about:")))]


@pytest.mark.parametrize("device", list(WIDTHS))
def test_report_page(browser, pages, device, tmp_path):
    width, mobile = WIDTHS[device]
    browser.open(pages["report"].as_uri(), width, mobile)
    check = browser.evaluate(RENDER_CHECK)
    assert set(SECTIONS) <= set(check["sections"]), check["sections"]
    assert check["charts"] >= 15 and check["notDrawn"] == [], check
    assert check["scripts"] == 0 and check["images"] == 0
    assert check["details"] >= 10 and check["visibleSamples"] == 0, "samples must be hidden until clicked"
    closed = browser.evaluate(OVERFLOW_CHECK)
    opened = browser.evaluate(OPEN_ALL)
    overflow = browser.evaluate(OVERFLOW_CHECK)
    for state in (closed, overflow):
        assert state["pageWidth"] <= state["width"] and state["wide"] == [], state
    assert opened["shown"] >= 10 and opened["hostile"] >= 1, opened  # shown as text, not run
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    (tmp_path / f"report-{device}.png").write_bytes(base64.b64decode(shot))
    assert not _problems(browser.events), _problems(browser.events)


@pytest.mark.parametrize("device", list(WIDTHS))
def test_compare_page(browser, pages, device):
    width, mobile = WIDTHS[device]
    browser.open(pages["compare"].as_uri(), width, mobile)
    opened = browser.evaluate(OPEN_ALL)
    assert opened["moved"] == 1 and opened["hostile"] == 1
    state = browser.evaluate(OVERFLOW_CHECK)
    assert state["pageWidth"] <= state["width"] and state["wide"] == [], state
    assert browser.evaluate("document.scripts.length") == 0
    assert not _problems(browser.events), _problems(browser.events)
