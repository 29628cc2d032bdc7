"""The HTML report and the loss chart: content, self-containment, escaping, and failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

import auditor
from auditor.cli import main
from auditor.plot import overfit_spans, thin
from auditor.render.html import explain
from conftest import EXAMPLES, FIXTURES

FLAGGED = FIXTURES / "real_overfit_flagged"
FLAGGED_LINE = (
    "Ship checkpoint-30: checkpoint-90's lower eval loss (-0.00438) is within the eval noise "
    "(2 x 0.0089), and it overfits by 0.34 vs 0.14."
)
INSTALL = "pip install 'checkpoint-auditor[plot]'"
# Named folders, so a fixture added later does not change the counts.
BUNDLED = (str(EXAMPLES), str(FIXTURES / "sweep"), str(FLAGGED))


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


class Page(HTMLParser):
    """What a test needs to know of a report page: ids, charts, overview rows, outside links."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.charts = 0
        self.overview_runs: list[str] = []
        self.external: list[str] = []
        self.tags: list[str] = []
        self._table = ""
        self._cell = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        if found.get("id"):
            self.ids.append(found["id"] or "")
        if tag == "figure" and found.get("class") == "chart":
            self.charts += 1
        if tag == "table":
            self._table = found.get("class") or ""
        if tag == "tr":
            self._cell = 0
        if tag == "td":
            self._cell += 1
            if "overview" in self._table and self._cell == 1:
                self.overview_runs.append(found.get("data-sort") or "")
        for name in ("src", "href", "xlink:href"):
            value = found.get(name) or ""
            if value and not value.startswith("#"):
                self.external.append(value)


@pytest.fixture(scope="module")
def fixtures_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """Return (html, stdout, stderr) of `ckpt-audit report fixtures/`."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = invoke("report", *BUNDLED, "-o", str(out))
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8"), result.stdout, result.stderr


def test_report_command_writes_the_file_and_a_summary(fixtures_report):
    text, stdout, stderr = fixtures_report
    assert stdout == ""
    assert "audited 18 runs: 1 overfit, 4 differs, 13 agree" in stderr
    assert "report written to" in stderr and "report.html" in stderr
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")


def test_report_explains_each_flagged_run_in_plain_words(fixtures_report):
    text = fixtures_report[0]
    assert "1 run would ship an overfit checkpoint with eval-loss-only selection" in text
    assert escape(FLAGGED_LINE) in text


def test_overview_lists_flagged_runs_first_and_every_run_once(fixtures_report):
    page = Page(fixtures_report[0])
    runs = page.overview_runs
    assert len(runs) == 18 and len(set(runs)) == 18
    assert runs[0].endswith("real_overfit_flagged")
    differs = {r.rsplit("/", 1)[-1] for r in runs[1:5]}
    assert differs == {"lm_epoch_strategy", "trl_sft", "run-0000", "run-0004"}


def test_one_chart_per_readable_run_with_unique_ids(fixtures_report):
    page = Page(fixtures_report[0])
    assert page.charts == 18
    assert len(page.ids) == len(set(page.ids)), "inline SVGs must not share element ids"


def test_report_is_self_contained(fixtures_report):
    text = fixtures_report[0]
    page = Page(text)
    assert page.external == []
    assert "link" not in page.tags and "img" not in page.tags
    assert "@import" not in text and "url(http" not in text
    assert "default-src 'none'" in text
    # Text stays text in the charts: no glyph paths, no embedded raster images.
    assert "<image" not in text
    assert "font-family" in text


def test_each_run_has_its_score_components(fixtures_report):
    text = fixtures_report[0]
    assert text.count('<table class="sortable components">') == 18
    assert "c.improv" in text and "1.0353" in text  # run-0000, step 100: score 1.0353


def test_unreadable_run_is_reported_without_a_chart(copy_run, tmp_path):
    copy_run("sweep/run-0001", "sweep/good")
    bad = copy_run("sweep/run-0002", "sweep/bad")
    for state in bad.rglob("trainer_state.json"):
        state.write_text("{not json")
    out = tmp_path / "r.html"
    result = invoke("report", str(tmp_path / "sweep"), "-o", str(out))
    assert result.exit_code == 0
    text = out.read_text()
    assert Page(text).charts == 1
    assert "Could not be read: " in text and "unreadable" in text
    assert "error:" in result.stderr


def test_folder_names_are_escaped(copy_run, tmp_path):
    copy_run("real_overfit_flagged", "<img src=x onerror=alert(1)>")
    out = tmp_path / "r.html"
    result = invoke("report", str(tmp_path), "-o", str(out))
    assert result.exit_code == 0
    text = out.read_text()
    assert "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_report_registered_as_a_format():
    result = invoke("scan", str(FLAGGED), "--format", "html", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert Page(result.stdout).charts == 1


def test_report_write_failure_is_exit_2_naming_the_path(tmp_path):
    target = tmp_path / "missing" / "r.html"
    result = invoke("report", str(FLAGGED), "-o", str(target))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"cannot write {target}" in result.stderr
    assert not target.parent.exists()


def test_plot_writes_png_and_svg(tmp_path):
    png, svg = tmp_path / "curve.png", tmp_path / "curve.svg"
    result = invoke("plot", str(FLAGGED), "-o", str(png))
    assert result.exit_code == 0 and result.stdout == ""
    assert "overfit; chart written to" in result.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert invoke("plot", str(FLAGGED), "-o", str(svg), "-q").exit_code == 0
    text = svg.read_text()
    assert "eval-only pick: checkpoint-90" in text and "scorer's pick: checkpoint-30" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "curve.svg"]


def test_plot_refuses_what_it_cannot_do(tmp_path):
    result = invoke("plot", str(FLAGGED), "-o", str(tmp_path / "curve.gif"))
    assert result.exit_code == 2 and result.stdout == ""
    assert "name the file .png, .svg or .pdf" in result.stderr
    result = invoke("plot", str(FIXTURES / "sweep"), "-o", str(tmp_path / "c.png"))
    assert result.exit_code == 2 and "plot takes one run" in result.stderr
    target = tmp_path / "no" / "c.png"
    result = invoke("plot", str(FLAGGED), "-o", str(target))
    assert result.exit_code == 2 and f"cannot write {target}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_plot_keeps_the_old_file_when_drawing_fails(tmp_path, monkeypatch):
    target = tmp_path / "c.png"
    target.write_bytes(b"old")

    def broken(*args: object, **kwargs: object) -> bytes:
        raise auditor.UsageError("drawing failed")

    monkeypatch.setattr("auditor.plot.chart_bytes", broken)
    result = invoke("plot", str(FLAGGED), "-o", str(target))
    assert result.exit_code == 2 and "drawing failed" in result.stderr
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]


def _without_matplotlib(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A package that fails to import stands in for a machine without the plot extra.
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    env = dict(os.environ, PYTHONPATH=str(shadow.parent))
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["report", "plot"])
def test_missing_matplotlib_is_exit_2_naming_the_extra(tmp_path, command):
    out = tmp_path / ("r.html" if command == "report" else "c.png")
    result = _without_matplotlib(tmp_path, command, str(FLAGGED), "-o", str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    assert INSTALL in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_scan_needs_no_matplotlib(tmp_path):
    result = _without_matplotlib(tmp_path, "scan", str(FLAGGED), "-q")
    assert result.returncode == 0 and "real_overfit_flagged" in result.stdout


def test_cli_start_up_does_not_import_matplotlib():
    code = "import sys, auditor.cli; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_overfit_spans_cover_where_eval_rises_and_train_falls():
    runs = {r.run_dir.rsplit("/", 1)[-1]: r for r in auditor.audit(*BUNDLED).runs}
    assert overfit_spans(runs["run-0000"]) == [(500, 1000)]
    assert overfit_spans(runs["trl_sft"]) == [(80, 300)]
    assert overfit_spans(runs["lm_healthy"]) == []


def test_thin_keeps_the_shape_of_a_long_curve():
    points = [(step, 1.0 + (step % 7) / 10) for step in range(5000)]
    points[3333] = (3333, 50.0)
    kept = thin(points, 600)
    assert len(kept) <= 602
    assert (3333, 50.0) in kept and min(v for _, v in kept) == 1.0
    assert [s for s, _ in kept] == sorted(s for s, _ in kept)
    assert thin(points[:10], 600) == points[:10]


def test_diverged_run_chart_clips_and_says_so():
    from auditor.plot import chart_svg

    run = auditor.audit(EXAMPLES / "lm_diverged").runs[0]
    svg = chart_svg(run, "d")
    assert "off the chart: loss up to 3.5e+12" in svg
    assert "eval loss NaN/inf" in svg


def test_explain_says_what_each_rule_would_ship():
    runs = {r.run_dir.rsplit("/", 1)[-1]: r for r in auditor.audit(*BUNDLED).runs}
    assert explain(runs["real_overfit_flagged"]) == FLAGGED_LINE
    assert explain(runs["run-0000"]) == (
        "Keep checkpoint-500: its eval loss is lower by 0.0778 (19x the eval noise); "
        "checkpoint-400 overfits less (0.59 vs 0.73)."
    )
    assert explain(runs["lm_healthy"]).startswith("Both rules pick checkpoint-300 (train ")
    assert explain(runs["trl_sft"]).startswith("Keep checkpoint-80: its eval loss is lower by ")
    assert explain(runs["cls_accuracy"]).startswith(
        "Both rules pick checkpoint-50 (train 0.67, eval 0.635: overfit 0.00). The Trainer's "
        "best, checkpoint-125 (chosen on eval_accuracy): ship checkpoint-50: "
    )


def test_a_long_history_makes_a_small_chart(tmp_path):
    from auditor.plot import chart_svg

    history: list[dict[str, float]] = []
    for step in range(1, 20_001):
        history.append({"loss": 2.0 / (1 + step / 1000) + (step % 13) / 100, "step": step})
        if step % 10 == 0:
            history.append({"eval_loss": 2.2 / (1 + step / 1000) + step / 40_000, "step": step})
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"global_step": 20_000, "log_history": history}))
    run = auditor.audit(state).runs[0]
    assert run.evaluations == 2000
    svg = chart_svg(run, "long")
    assert len(svg) < 80_000, len(svg)
    assert "eval-only pick: step " in svg


def test_report_records_the_config_it_was_made_with(fixtures_report):
    text = fixtures_report[0]
    assert "Config this report was made with" in text
    assert "min_gap_delta: 0.1" in text and "train_loss: last" in text


def test_charts_drawn_by_worker_processes_make_the_same_page(monkeypatch):
    from auditor import workers
    from auditor.render import html as html_report
    from auditor.render import render

    result = auditor.audit(*BUNDLED)
    monkeypatch.setenv("CKPT_AUDIT_JOBS", "1")
    alone = render(result, "html")
    monkeypatch.setenv("CKPT_AUDIT_JOBS", "3")
    shared = render(result, "html")
    assert len(result.runs) >= html_report.CHARTS_PARALLEL_FROM and workers.can_fork()
    assert shared == alone
    assert Page(shared).charts == sum(1 for r in result.runs if r.error is None)
