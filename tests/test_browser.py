"""The HTML report in a real headless Chromium: it renders, throws nothing, sorts, and stays light.

Chromium is driven over its DevTools pipe (--remote-debugging-pipe: JSON messages ending in NUL on
file descriptors 3 and 4), so the test sees console errors, uncaught exceptions and failed loads
as the browser reports them, with no extra package.
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import random
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import main
from conftest import FIXTURES, drop_evaluations, expected_rows

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TIMEOUT = 60.0

# A chart counts when its canvas is on screen, of a readable size, and has something drawn.
DRAWN = """
function drawn(figure) {
  var canvas = figure.querySelector('canvas');
  if (!canvas) { return false; }
  var box = canvas.getBoundingClientRect(), style = getComputedStyle(canvas);
  if (box.width < 300 || box.height < 100 || style.visibility !== 'visible') { return false; }
  var pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  var inked = 0;
  for (var i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) { inked++; } }
  return inked > 2000;
}
"""
# Scroll every chart into view in turn (charts below the fold are drawn when they come near),
# then count the drawn ones.
VISIBLE_CHARTS = (
    "(async function () {"
    + DRAWN
    + """
  var figures = Array.from(document.querySelectorAll('figure.chart'));
  for (var figure of figures) {
    figure.scrollIntoView();
    await new Promise(function (done) {
      requestAnimationFrame(function () { requestAnimationFrame(done); });
    });
  }
  window.scrollTo(0, 0);
  return figures.filter(drawn).length;
})()
"""
)
# Milliseconds from the start of navigation to the first chart drawn (null after 10 s without).
FIRST_CHART_MS = """new Promise(function (done) {
  var waited = 0;
  (function poll() {
    var first = window.ckptAuditFirstChart;
    if (first || waited > 10000) { return done(first || null); }
    waited += 20;
    setTimeout(poll, 20);
  })();
})"""
FIRST_RUN = "document.querySelector('table.overview tbody tr td').getAttribute('data-sort')"


def chromium_path() -> str:
    """Return the Chromium to drive; fail under CI (where .ci/run installs it), else skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail("chromium is not installed: .ci/run installs it with apt-get install chromium")
    pytest.skip("chromium is not installed (apt-get install chromium)")


class Browser:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Park the child's ends above 3 and 4 so placing them there cannot clobber each other.
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)

        def place_pipes() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.log = profile / "chromium.log"
        log = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            close_fds=False,
            preexec_fn=place_pipes,
        )
        log.close()
        os.close(child_r)
        os.close(child_w)
        self.writer, self.reader = to_browser_w, from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, event: str) -> None:
        """Return once `event` has arrived (it may have arrived already)."""
        while not any(e["method"] == event for e in self.events):
            self.events.append(self._receive())

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.reader], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"chromium did not answer within {TIMEOUT:.0f} s")
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                raise AssertionError(f"chromium exited: {self.log.read_text(errors='replace')}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str, width: int = 1280, height: int = 1400) -> float:
        """Load `url` in the page and return the seconds until its load event."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.events.clear()
        started = time.monotonic()
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        return time.monotonic() - started

    def evaluate(self, expression: str) -> Any:
        """Return the value of a JavaScript expression in the page (awaited if a promise)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Return every console error, uncaught exception and failed load seen so far."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(json.dumps(params["args"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def screenshot(self, path: Path) -> None:
        """Save what the page shows to `path` as PNG."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Close the browser and wait for it to exit."""
        try:
            self.session = ""
            self.call("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.writer)
        os.close(self.reader)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    executable = chromium_path()
    page = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield page
    page.close()


#: The fixture folders the report below audits, and what fixtures/EXPECTED.yaml says of them:
#: how many report rows (one per training) and how many flagged, plus the never-evaluated run.
BUNDLED = ("examples", "sweep", "real_overfit_flagged")
_BUNDLED_ROWS = [
    want
    for name, want, _ in expected_rows()
    if any(name == folder or name.startswith(folder + "/") for folder in BUNDLED)
]
REPORT_RUNS = len(_BUNDLED_ROWS) + 1
REPORT_FLAGGED = sum(want["verdict"] == "overfit" for want in _BUNDLED_ROWS)


@pytest.fixture(scope="module")
def fixtures_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A run that was never evaluated, which has no pick to sort by, besides the fixtures.
    never = tmp_path_factory.mktemp("never") / "never_evaluated"
    shutil.copytree(FIXTURES / "examples" / "lm_healthy", never)
    drop_evaluations(never)
    bundled = [*(FIXTURES / folder for folder in BUNDLED), never]
    return make_report(bundled, tmp_path_factory.mktemp("report") / "report.html")


def make_report(paths: list[Path], out: Path) -> Path:
    result = CliRunner().invoke(main, ["report", *map(str, paths), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_report_renders_with_no_errors_and_every_chart_visible(browser, fixtures_report):
    browser.open(fixtures_report.as_uri())
    assert browser.errors() == []
    charts = "document.querySelectorAll('figure.chart').length"
    assert browser.evaluate(charts) == REPORT_RUNS
    assert browser.evaluate(VISIBLE_CHARTS) == REPORT_RUNS
    title = f"Checkpoint audit: {REPORT_RUNS} runs, {REPORT_FLAGGED} flagged"
    assert browser.evaluate("document.title") == title
    assert browser.errors() == []
    browser.screenshot(ARTIFACTS / "report.png")
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_hovering_a_chart_shows_the_step_and_values_and_dragging_zooms(browser, fixtures_report):
    browser.open(fixtures_report.as_uri())
    browser.evaluate("document.querySelector('figure.chart').scrollIntoView()")
    box = browser.evaluate(
        "(function () { var r = document.querySelector('figure.chart .u-over')"
        ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )
    left, top, width, height = box
    legend = (
        "Array.from(document.querySelector('figure.chart').querySelectorAll('.u-legend .u-value'))"
        ".map(function (cell) { return cell.textContent; })"
    )
    assert browser.evaluate(legend)[0] == "--"
    mouse = {"x": left + width * 0.5, "y": top + height * 0.5}
    browser.call("Input.dispatchMouseEvent", {"type": "mouseMoved", **mouse})
    values = browser.evaluate(legend)
    low, high = browser.evaluate(
        "(function (x) { return [x.min, x.max]; })"
        "(document.querySelector('figure.chart').uplot.scales.x)"
    )
    # The point under the middle of the chart: a step from the middle of its range.
    step = int(values[0].replace(",", ""))
    assert low + 0.3 * (high - low) <= step <= low + 0.7 * (high - low)
    assert any(v not in ("--", "") for v in values[1:3])
    before = browser.evaluate("document.querySelector('figure.chart').uplot.scales.x.max")
    start = {"x": left + width * 0.2, "y": top + height * 0.5}
    end = {"x": left + width * 0.4, "y": top + height * 0.5}
    browser.call("Input.dispatchMouseEvent", {"type": "mouseMoved", **start})
    browser.call(
        "Input.dispatchMouseEvent",
        {"type": "mousePressed", "button": "left", "clickCount": 1, **start},
    )
    browser.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "buttons": 1, **end})
    browser.call(
        "Input.dispatchMouseEvent",
        {"type": "mouseReleased", "button": "left", "clickCount": 1, **end},
    )
    after = browser.evaluate("document.querySelector('figure.chart').uplot.scales.x.max")
    assert after < before
    assert browser.errors() == []


def test_clicking_a_header_sorts_the_overview(browser, fixtures_report):
    browser.open(fixtures_report.as_uri())
    assert browser.evaluate(FIRST_RUN).endswith("real_overfit_flagged")
    click = "document.querySelectorAll('table.overview thead tr:last-child th')[0].click()"
    names = (
        "Array.from(document.querySelectorAll('table.overview tbody tr'))"
        ".map(function (r) { return r.cells[0].getAttribute('data-sort'); })"
    )
    browser.evaluate(click)
    ascending = browser.evaluate(names)
    assert ascending == sorted(ascending) and len(set(ascending)) == REPORT_RUNS
    browser.evaluate(click)
    assert browser.evaluate(names) == ascending[::-1]
    # The scorer's eval loss column: lowest first, runs with no pick last.
    by_eval = "document.querySelectorAll('table.overview thead tr:last-child th')[7].click()"
    browser.evaluate(by_eval)
    order = browser.evaluate(
        "Array.from(document.querySelectorAll('table.overview tbody tr'))"
        ".map(function (r) { return r.cells[7].getAttribute('data-sort'); })"
    )
    numbers = [float(v) for v in order if v]
    assert numbers == sorted(numbers) and order[-1] == ""
    assert browser.errors() == []


def write_sweep(root: Path, runs: int, seed: int = 0) -> None:
    """Write a sweep of Trainer-shaped runs (a third overfit), like the Trainer lays them out."""
    rng = random.Random(seed)
    steps, eval_every, logging = 2000, 200, 5
    for index in range(runs):
        overfit = index % 3 == 0
        floor = rng.uniform(0.4, 1.5)
        history: list[dict[str, Any]] = []
        for step in range(logging, steps + 1, logging):
            t = step / steps
            train = floor * (0.15 if overfit else 0.9) + 2.5 * math.exp(-6 * t)
            history.append({"loss": round(train + rng.gauss(0, 0.02), 4), "step": step})
            if step % eval_every == 0:
                rise = 4.8 * max(0.0, t - 0.45) ** 2 if overfit else 0.0
                loss = floor + 2.5 * math.exp(-6 * t) + rise + rng.gauss(0, 0.01)
                history.append({"eval_loss": loss, "step": step})
        run = root / f"run-{index:04d}"
        for step in range(eval_every, steps + 1, eval_every):
            folder = run / f"checkpoint-{step}"
            folder.mkdir(parents=True)
            state = {"global_step": step, "log_history": [h for h in history if h["step"] <= step]}
            (folder / "trainer_state.json").write_text(json.dumps(state))
        (run / "trainer_state.json").write_text(
            json.dumps({"global_step": steps, "log_history": history})
        )


def test_fifty_run_sweep_report_is_small_and_opens_quickly(browser, tmp_path):
    write_sweep(tmp_path / "sweep", 50)
    report = make_report([tmp_path / "sweep"], tmp_path / "report.html")
    size = report.stat().st_size
    assert size < 3_000_000, f"report of 50 runs is {size / 1e6:.1f} MB"
    seconds = browser.open(report.as_uri())
    assert seconds < 10, f"the 50-run report took {seconds:.1f} s to load"
    first_chart = browser.evaluate(FIRST_CHART_MS)
    assert first_chart is not None and first_chart < 2000, f"first chart at {first_chart} ms"
    assert browser.errors() == []
    assert browser.evaluate(VISIBLE_CHARTS) == 50
    assert browser.errors() == []
    flagged = browser.evaluate("document.querySelectorAll('tr.flagged').length")
    assert flagged >= 1
    first = browser.evaluate(
        "Array.from(document.querySelectorAll('table.overview tbody tr')).slice(0, "
        f"{flagged}).every(function (r) {{ return r.classList.contains('flagged'); }})"
    )
    assert first is True
