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
from auditor.curves import overfit_spans, thin
from auditor.render.charts import MAX_POINTS, chart_data, charts_json, uplot_assets
from auditor.render.html import explain
from conftest import EXAMPLES, FIXTURES

FLAGGED = FIXTURES / "real_overfit_flagged"
FLAGGED_LINE = (
    "Compare checkpoint-30 with checkpoint-90 on data you trust before shipping either: "
    "checkpoint-90's lower eval loss (-0.00438) is within the eval noise (2 x 0.0089), and it "
    "overfits by 0.34 vs 0.14."
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


def test_plot_without_matplotlib_is_exit_2_naming_the_extra(tmp_path):
    out = tmp_path / "c.png"
    result = _without_matplotlib(tmp_path, "plot", str(FLAGGED), "-o", str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    assert INSTALL in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_report_needs_no_matplotlib(tmp_path):
    out = tmp_path / "r.html"
    result = _without_matplotlib(tmp_path, "report", str(FLAGGED), "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert Page(out.read_text(encoding="utf-8")).charts == 1


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


def test_diverged_run_chart_clips_and_says_so(tmp_path):
    out = tmp_path / "r.html"
    assert invoke("report", str(EXAMPLES / "lm_diverged"), "-o", str(out)).exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert "off the chart: loss up to 3.5e+12" in text
    assert "eval loss NaN/inf at 10 steps" in text
    data = chart_data(auditor.audit(EXAMPLES / "lm_diverged").runs[0])
    low, high = data["y"]
    assert low == 0 and 0 < high < 3.5e12 and data["clipped"] == pytest.approx(3.5e12, rel=1e-3)


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


def test_a_long_history_makes_a_small_chart_that_keeps_its_extremes(tmp_path):
    history: list[dict[str, float]] = []
    for step in range(1, 20_001):
        loss = 2.0 / (1 + step / 1000) + (step % 13) / 100
        history.append({"loss": 9.0 if step == 12_345 else loss, "step": step})
        if step % 10 == 0:
            history.append({"eval_loss": 2.2 / (1 + step / 1000) + step / 40_000, "step": step})
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"global_step": 20_000, "log_history": history}))
    run = auditor.audit(state).runs[0]
    assert run.evaluations == 2000
    data = chart_data(run)
    steps, losses = data["train"]
    assert len(steps) <= MAX_POINTS + 2 and steps == sorted(steps)
    assert (12_345, 9.0) in zip(steps, losses, strict=True)
    assert min(losses) == pytest.approx(min(v for _, v in run.train_losses), abs=1e-4)
    assert len(charts_json({"0": data})) < 30_000
    assert data["evalOnly"] is not None and data["markers"] is False


def test_chart_data_holds_both_picks_and_the_checkpoints_on_disk():
    run = auditor.audit(FIXTURES / "sweep" / "run-0000").runs[0]
    data = chart_data(run)
    assert data["evalOnly"][0] == run.eval_only_pick.step == 500
    assert data["scorer"][0] == run.scorer_pick.step == 400
    assert data["disk"] == [c.step for c in run.checkpoints if c.on_disk]
    assert [list(span) for span in data["spans"]] == [[500, 1000]]
    assert data["eval"][0] == [c.step for c in run.checkpoints if c.eval_loss is not None]


def test_chart_data_cannot_end_its_script_element():
    text = charts_json({"0": {"key": "eval_</script><script>alert(1)</script>_loss"}})
    assert "</script>" not in text and "<" not in text
    assert json.loads(text)["0"]["key"].startswith("eval_</script>")


def test_the_page_names_the_best_checkpoint_of_each_sweep(fixtures_report):
    text = fixtures_report[0]
    assert "Best checkpoint of the sweep" in text
    assert "run-0001/checkpoint-1000</a> (score 0.152, eval loss 0.438)" in text


def test_report_checks_its_output_before_auditing(tmp_path):
    missing = tmp_path / "nowhere" / "report.html"
    result = invoke("report", str(FIXTURES), "-o", str(missing))
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "does not exist" in result.stderr
    # Nothing was audited: no summary line, no warnings about the runs.
    assert "audited" not in result.stderr and "warning" not in result.stderr


def test_the_chart_library_ships_with_its_licence():
    from importlib.resources import files

    folder = files("auditor.render") / "vendor" / "uplot"
    assert "MIT License" in (folder / "LICENSE").read_text(encoding="utf-8")
    script, style = uplot_assets()
    assert "uPlot" in script and ".uplot" in style


def test_report_records_the_config_it_was_made_with(fixtures_report):
    text = fixtures_report[0]
    assert "Config this report was made with" in text
    assert "min_gap_delta: 0.1" in text and "train_loss: last" in text


def test_the_trainings_of_one_folder_are_told_apart():
    from auditor.render import render

    page = render(auditor.audit(FIXTURES / "real_two_trainings"), "html")
    for number in (1, 2):
        assert f"real_two_trainings (training {number}/2)" in page


def test_the_smoothed_pick_is_in_the_overview_the_run_section_and_the_chart():
    from auditor.render import render

    result = auditor.audit(EXAMPLES / "cls_accuracy")
    run = result.runs[0]
    assert chart_data(run)["smoothed"][0] == run.smoothed_pick.step == 75
    page = render(result, "html")
    assert "<td>checkpoint-75</td>" in page
    assert (
        '<p class="smoothed">The smoothed eval minimum is checkpoint-75 (lowest 3-point mean '
        "eval_loss 0.6633).</p>"
    ) in page
    assert "picked('smoothed pick', SMOOTHED)" in page
    short = auditor.audit(FIXTURES / "sweep" / "run-0000").runs[0]
    assert short.smoothed_pick is None and chart_data(short)["smoothed"] is None
