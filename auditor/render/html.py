"""The HTML report: one self-contained page with a sweep overview and a loss chart per run."""

from __future__ import annotations

import math
import os
from html import escape
from typing import Any

from .. import __version__
from ..config import Config, to_yaml
from ..evidence import decision
from ..picks import SMOOTHED_FROM
from ..results import VERDICT_ORDER, AuditResult, CheckpointResult, Pick, RunResult, verdict_rank
from ..storage import is_url
from ..sweep import SweepPick
from .text import marks, number, safe, smoothed_line

VERDICT_TEXT = {
    "overfit": "overfit pick",
    "error": "unreadable",
    "differs": "picks differ",
    "no_candidates": "nothing to pick",
    "agree": "picks agree",
}


def render(result: AuditResult, view: str = "runs") -> str:
    """Return the report as one HTML document that needs no network to view.

    The same page serves every view. Each chart is drawn in the page from its data (JSON) by
    the vendored uPlot, when it comes into view.
    """
    from .charts import SCRIPT, chart_data, charts_json, uplot_assets

    runs = sorted(enumerate(result.runs), key=lambda item: (_rank(item[1]), item[0]))
    flagged = [(i, r) for i, r in runs if r.flagged]
    counts = ", ".join(
        f"{n} {VERDICT_TEXT[v]}"
        for v in VERDICT_ORDER
        if (n := sum(1 for r in result.runs if r.verdict == v))
    )
    noun = "run" if len(result.runs) == 1 else "runs"
    base, names = short_names([r.run_dir for r in result.runs])
    # The trainings of one folder share its name: the label tells them apart.
    names = [
        name + run.label[len(run.run_dir) :] for name, run in zip(names, result.runs, strict=True)
    ]
    below = f" below {safe(base)}" if base else ""
    charts = {str(i): chart_data(r) for i, r in runs if r.error is None}
    uplot_script, uplot_style = uplot_assets()
    parts = [
        _HEAD.format(
            title=escape(f"Checkpoint audit: {len(result.runs)} {noun}, {len(flagged)} flagged"),
            style=uplot_style + _STYLE,
            policy=_POLICY,
        ),
        "<header><h1>Checkpoint audit</h1>",
        f'<p class="lede">{len(result.runs)} {noun} audited{escape(below)}: '
        f"{escape(counts)}.</p></header>",
        _findings(flagged, names, result.config),
        _sweep_best(result, names),
        _overview(runs, names),
        *(
            _run_section(index, run, names[index], result, charts.get(str(index)))
            for index, run in runs
        ),
        _footer(result),
        f'<script type="application/json" id="ckpt-chart-data">{charts_json(charts)}</script>',
        f"<script>{uplot_script}</script>",
        f"<script>{SCRIPT}{_SCRIPT}</script>\n</body>\n</html>\n",
    ]
    return "\n".join(parts)


def _sweep_best(result: AuditResult, names: list[str]) -> str:
    """Return the best checkpoint of each sweep on the page, by score and by eval loss."""
    if not result.sweep_best:
        return ""
    anchors = {run.run_dir: _anchor(i) for i, run in enumerate(result.runs)}

    def link(pick: SweepPick, parent: str) -> str:
        label = escape(safe(pick.label_below(parent)))
        anchor = anchors.get(pick.run_dir)
        return f'<a href="#{anchor}">{label}</a>' if anchor else label

    items = []
    for group in result.sweep_best:
        by_score, by_eval = group.by_score, group.by_eval_loss
        line = (
            f"<b>{escape(safe(group.parent))}</b> ({group.runs} runs on "
            f"<code>{escape(safe(group.eval_key))}</code>): by score "
            f"{link(by_score, group.parent)} (score {number(by_score.score, 3)}, eval loss "
            f"{number(by_score.eval_loss, 3)}); lowest eval loss: "
        )
        if by_eval == by_score:
            line += "the same checkpoint."
        else:
            line += (
                f"{link(by_eval, group.parent)} (score {number(by_eval.score, 3)}, eval loss "
                f"{number(by_eval.eval_loss, 3)})."
            )
        items.append(f"<li>{line}</li>")
    return (
        '<section class="best"><h2>Best checkpoint of the sweep</h2><ul>'
        + "".join(items)
        + "</ul></section>"
    )


def explain(run: RunResult, config: Config | None = None) -> str:
    """Return one plain-language sentence saying what each selection rule would ship and why."""
    if run.error is not None:
        return f"Could not be read: {safe(run.error)}"
    eval_only, scorer = run.row(run.eval_only_pick), run.row(run.scorer_pick)
    if eval_only is None or scorer is None:
        if run.eval_key is None:
            return "Nothing to pick: the run has no eval loss to select on (see the warnings)."
        return "Nothing to pick: no checkpoint on disk has a finite eval loss at its step."
    said = decision(run, config or Config())
    if run.verdict == "agree":
        agreed = f"Both rules pick {_name(eval_only)} ({_losses(eval_only)})."
        return agreed if said is None else f"{agreed} {_capital(safe(said))}."
    return _capital(safe(said or "")) + "."


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def short_names(run_dirs: list[str]) -> tuple[str, list[str]]:
    """Return the folder every run sits below and each run's path relative to it.

    Paths in a sweep share a long prefix; the table reads better without it.
    """
    if run_dirs and all(is_url(d) for d in run_dirs):
        # os.path would read s3://bucket as the folder "s3:/bucket".
        folders = [d.rsplit("/", 1)[0] if d.endswith(".json") else d.rstrip("/") for d in run_dirs]
        parents = [f.split("/")[:-1] for f in folders]
        shared = 0
        for parts in zip(*parents, strict=False):  # up to the shortest
            if len(set(parts)) > 1:
                break
            shared += 1
        base = "/".join(parents[0][:shared])
        return base, [safe(d[len(base) + 1 :]) for d in run_dirs]
    try:
        # A bare trainer_state.json keeps its folder's name in view.
        folders = [os.path.dirname(d) if d.endswith(".json") else d for d in run_dirs]
        base = os.path.commonpath([os.path.dirname(f) for f in folders]) if folders else ""
    except ValueError:  # absolute and relative paths mixed
        base = ""
    if not base:
        return "", [safe(d) for d in run_dirs]
    return base, [safe(os.path.relpath(d, base)) for d in run_dirs]


def _rank(run: RunResult) -> int:
    return verdict_rank(run.verdict)


def _name(row: CheckpointResult) -> str:
    return safe(row.checkpoint) if row.checkpoint else f"step {row.step}"


def _losses(row: CheckpointResult) -> str:
    overfit = f"overfit {number(row.overfit, 2)}"
    if row.train_loss is None or not math.isfinite(row.train_loss):
        return f"eval {_short(row.eval_loss)}, no train loss: {overfit}"
    return f"train {_short(row.train_loss)}, eval {_short(row.eval_loss)}: {overfit}"


def _short(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return number(value)
    return f"{value:.3g}"


def _anchor(index: int) -> str:
    return f"run-{index}"


def _badge(run: RunResult) -> str:
    text = VERDICT_TEXT.get(run.verdict, run.verdict)
    return f'<span class="badge {escape(run.verdict)}">{escape(text)}</span>'


def _findings(flagged: list[tuple[int, RunResult]], names: list[str], config: Config) -> str:
    if not flagged:
        return (
            '<section class="findings ok"><p>No run would ship an overfit checkpoint with '
            "eval-loss-only selection.</p></section>"
        )
    noun = "run" if len(flagged) == 1 else "runs"
    items = "\n".join(
        f'<li><a href="#{_anchor(i)}">{escape(names[i])}</a>: {escape(explain(r, config))}</li>'
        for i, r in flagged
    )
    return (
        f'<section class="findings"><h2>{len(flagged)} {noun} would ship an overfit checkpoint '
        f"with eval-loss-only selection</h2>\n<ul>\n{items}\n</ul></section>"
    )


_OVERVIEW_HEAD = """<table class="sortable overview">
<thead>
<tr class="group"><th colspan="2"></th><th colspan="4" class="g-eval">eval-only pick</th>
<th colspan="4" class="g-score">scorer's pick</th><th colspan="3"></th></tr>
<tr>{cells}</tr>
</thead>
<tbody>"""
_OVERVIEW_COLUMNS = (
    ("run", ""),
    ("verdict", ""),
    ("checkpoint", "g-eval"),
    ("eval loss", "num g-eval"),
    ("overfit", "num g-eval"),
    ("score", "num g-eval"),
    ("checkpoint", "g-score"),
    ("eval loss", "num g-score"),
    ("overfit", "num g-score"),
    ("score", "num g-score"),
    ("smoothed pick", ""),
    ("trainer's best", ""),
    ("ckpts", "num"),
)


def _overview(runs: list[tuple[int, RunResult]], names: list[str]) -> str:
    # The page opens sorted by verdict, worst first: say so on that column.
    sorted_by = ' aria-sort="ascending"'
    cells = "".join(
        f'<th class="{cls}"{sorted_by if name == "verdict" else ""}>'
        f'<button type="button">{escape(name)}</button></th>'
        for name, cls in _OVERVIEW_COLUMNS
    )
    rows = "\n".join(_overview_row(i, r, names[i]) for i, r in runs)
    return (
        '<section><h2>Runs</h2><p class="hint">Click a column header to sort. Overfit is '
        "max(0, eval - train) / eval, what the flag weighs; lower scores are better.</p>\n"
        + '<div class="scroll">'
        + _OVERVIEW_HEAD.format(cells=cells)
        + f"\n{rows}\n</tbody></table></div></section>"
    )


def _overview_row(index: int, run: RunResult, short: str) -> str:
    name = escape(short)
    cells = [
        f'<td data-sort="{name}" title="{escape(safe(run.run_dir))}">'
        f'<a href="#{_anchor(index)}">{name}</a></td>',
        f'<td data-sort="{_rank(run)}">{_badge(run)}</td>',
        *_pick_cells(run, run.eval_only_pick, "g-eval"),
        *_pick_cells(run, run.scorer_pick, "g-score"),
        f"<td>{escape(safe(run.smoothed_pick.label)) if run.smoothed_pick else '-'}</td>",
        f"<td>{escape(safe(run.trainer_best.label)) if run.trainer_best else '-'}</td>",
        _num_cell(None if run.history_only or run.error else float(run.checkpoints_on_disk), "", 0),
    ]
    cls = ' class="flagged"' if run.flagged else ""
    return f"<tr{cls}>{''.join(cells)}</tr>"


def _pick_cells(run: RunResult, pick: Pick | None, group: str) -> list[str]:
    row = run.row(pick)
    if pick is None or row is None:
        return [f'<td class="{group}" data-sort="">-</td>'] + [
            _num_cell(None, group) for _ in range(3)
        ]
    return [
        f'<td class="{group}" data-sort="{row.step}">{escape(_name(row))}</td>',
        _num_cell(row.eval_loss, group, 3),
        _num_cell(row.overfit, group, 3),
        _num_cell(row.score.total if row.score else None, group, 3),
    ]


def _num_cell(value: float | None, group: str, digits: int = 4) -> str:
    key = "" if value is None or math.isnan(value) else repr(value)
    return f'<td class="num {group}" data-sort="{key}">{number(value, digits)}</td>'


_COMPONENT_HEADERS = (
    "step",
    "checkpoint",
    "eval loss",
    "train loss",
    "gap",
    "overfit",
    "perplexity",
    "k",
    "c.eval",
    "c.gap",
    "c.ppl",
    "c.improv",
    "score",
    "pick",
)


def _run_section(
    index: int, run: RunResult, short: str, result: AuditResult, chart: dict[str, Any] | None
) -> str:
    parts = [
        f'<section class="run {escape(run.verdict)}" id="{_anchor(index)}">',
        f"<h2>{escape(short)} {_badge(run)}</h2>",
        f'<p class="path">{escape(safe(run.run_dir))}</p>' if short != safe(run.run_dir) else "",
        f'<p class="why">{escape(explain(run, result.config))}</p>',
    ]
    smoothed = smoothed_line(run)
    if smoothed is not None:
        parts.append(f'<p class="smoothed">{escape(_capital(smoothed))}.</p>')
    if chart is not None:
        notes = ["drag to zoom, double-click to zoom out"]
        if chart["clipped"] is not None:
            notes.append(f"off the chart: loss up to {chart['clipped']:.3g}")
        if chart["broken"]:
            notes.append(f"eval loss NaN/inf at {len(chart['broken'])} steps (x at the top)")
        parts.append(
            f'<figure class="chart" data-chart="{index}"><div class="plot"></div>'
            f"<figcaption>{escape('; '.join(notes))}</figcaption></figure>"
        )
        parts.append(_components(run))
    if run.warnings:
        items = "".join(f"<li>{escape(safe(w))}</li>" for w in run.warnings)
        parts.append(f'<ul class="warnings">{items}</ul>')
    parts.append("</section>")
    return "\n".join(parts)


def _components(run: RunResult) -> str:
    head = "".join(
        f'<th class="{"num" if i not in (1, 13) else ""}"><button type="button">{h}</button></th>'
        for i, h in enumerate(_COMPONENT_HEADERS)
    )
    rows = []
    for row in run.checkpoints:
        s = row.score
        picked = marks(run, row)
        cls = []
        if run.scorer_pick is not None and row.step == run.scorer_pick.step:
            cls.append("pick-score")
        if run.eval_only_pick is not None and row.step == run.eval_only_pick.step:
            cls.append("pick-eval")
        k = row.epochs_without_improvement
        # Bare cells: a 500-run page holds 10,000 of these rows. Columns are aligned by the
        # style sheet, and the sorting script reads the numbers from the text.
        cells = [
            str(row.step),
            escape(safe(row.checkpoint)) if row.checkpoint else "(deleted)",
            number(row.eval_loss),
            number(row.train_loss),
            number(row.gap),
            number(row.overfit),
            number(row.perplexity, 2),
            "-" if k is None else str(k),
            number(s.eval if s else None),
            number(s.gap if s else None),
            number(s.perplexity if s else None),
            number(s.improvement if s else None, 2),
            number(s.total if s else None),
            escape(picked),
        ]
        attr = f' class="{" ".join(cls)}"' if cls else ""
        rows.append(f"<tr{attr}><td>{'</td><td>'.join(cells)}</td></tr>")
    is_open = " open" if run.verdict != "agree" else ""
    return (
        f"<details{is_open}><summary>Score components ({len(run.checkpoints)} rows)</summary>\n"
        f'<table class="sortable components"><thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table></details>"
    )


def _footer(result: AuditResult) -> str:
    w = result.config.weights
    return (
        "<footer><p><b>How to read this.</b> The eval-only pick is the checkpoint on disk with "
        "the lowest eval loss (what <code>load_best_model_at_end</code> keeps). The scorer's "
        f"pick has the lowest score = {w.eval:g} &times; eval loss + {w.gap:g} &times; gap + "
        f"{w.perplexity:g} &times; min(perplexity / {result.config.perplexity_cap:g}, 1) + "
        f"bonus ({result.config.improvement_bonus:g} when the evaluation sets a new best eval "
        "loss). A run is flagged when the eval-only pick overfits (max(0, eval - train) / eval) "
        f"by at least {result.config.min_gap_delta:g} more than the scorer's pick and no "
        "held-out evidence says it is better: its lower eval loss is within the noise of the "
        "eval curve, and no task metric (eval_accuracy, ...) rates it better. On the charts, "
        "hover for each point's step and values; circled: the eval-only pick (red), the "
        "scorer's pick (green) and the smoothed pick (purple: the lowest centred 3-point mean "
        f"eval loss, shown from {SMOOTHED_FROM} evaluations on, see docs/selection.md); ticks "
        "under the axis: checkpoints on disk; shaded: where eval loss keeps rising while "
        "train loss falls.</p>"
        "<details><summary>Config this report was made with</summary>"
        f"<pre>{escape(to_yaml(result.config, comments=False))}</pre></details>"
        f"<p>Made by ckpt-audit {escape(__version__)}.</p></footer>"
    )


# No network when viewing: the policy forbids every fetch, so the page is what the file holds.
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<title>{title}</title>
<style>{style}</style>
</head>
<body>"""

_STYLE = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --bg: #f6f8fa;
  --red: #c0392b; --green: #1e8449; --amber: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1280px; padding: 24px 28px 48px; color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 8px; }
a { color: #0969da; text-decoration: none; }
a:hover { text-decoration: underline; }
.lede { color: var(--muted); margin: 0 0 16px; font-size: 15px; }
.findings { border: 1px solid #f1aeb5; background: #fff5f5; border-radius: 8px;
  padding: 12px 16px; margin: 0 0 20px; }
.findings.ok { border-color: #a7d7b6; background: #f3fbf5; }
.findings h2 { color: var(--red); }
.findings ul { margin: 0; padding-left: 20px; }
.findings li { margin: 4px 0; }
.findings p { margin: 0; }
.hint { color: var(--muted); margin: 0 0 6px; font-size: 13px; }
.scroll { overflow-x: auto; }
table.overview td:first-child { max-width: 22em; overflow: hidden; text-overflow: ellipsis; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--line); text-align: left;
  white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: var(--bg); position: sticky; top: 0; }
tr.group th { font-weight: 600; text-align: center; border-bottom: 0; padding-bottom: 0; }
th.g-eval, td.g-eval { background-color: rgba(192, 57, 43, 0.04); }
th.g-score, td.g-score { background-color: rgba(30, 132, 73, 0.05); }
tr.group th.g-eval { color: var(--red); }
tr.group th.g-score { color: var(--green); }
th button { all: unset; cursor: pointer; font-weight: 600; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; font-size: 10px; }
th[aria-sort="descending"] button::after { content: " \\25BC"; font-size: 10px; }
tbody tr:hover td { background-color: #fffbe6; }
tr.flagged td:first-child { box-shadow: inset 3px 0 0 var(--red); }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; vertical-align: middle; border: 1px solid transparent; }
.badge.overfit { background: var(--red); color: #fff; }
.badge.error { background: #6e1a12; color: #fff; }
.badge.differs { background: #fff8c5; color: var(--amber); border-color: #e6d58a; }
.badge.agree { background: #dafbe1; color: var(--green); }
.badge.no_candidates { background: #eaeef2; color: var(--muted); }
section.run { border-top: 1px solid var(--line); padding-top: 18px; margin-top: 22px;
  content-visibility: auto; contain-intrinsic-size: auto 760px; }
section.run h2 { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 15px; }
.why { margin: 0 0 6px; font-size: 14px; }
.path { margin: -6px 0 6px; color: var(--muted); font-size: 12px;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
section.run.overfit .why { color: var(--red); font-weight: 600; }
figure.chart { margin: 0; max-width: 1000px; }
figure.chart .plot { min-height: 340px; }
figure.chart figcaption { color: var(--muted); font-size: 12px; }
.best { margin: 0 0 20px; }
.best ul { margin: 0; padding-left: 20px; }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--muted); font-size: 13px; }
table.components { margin-top: 4px; }
table.components td { text-align: right; font-variant-numeric: tabular-nums; }
table.components td:nth-child(2), table.components td:last-child { text-align: left; }
tr.pick-eval td { background-color: #fdecea; }
tr.pick-score td { background-color: #e6f4ea; }
tr.pick-eval.pick-score td { background-color: #eef6ee; }
.warnings { color: var(--amber); font-size: 13px; margin: 6px 0 0; padding-left: 20px; }
footer { border-top: 1px solid var(--line); margin-top: 32px; padding-top: 12px;
  color: var(--muted); font-size: 13px; }
"""

_SCRIPT = """
(function () {
  function key(row, col) {
    var cell = row.cells[col];
    var text = cell.getAttribute('data-sort');
    if (text === null) { text = cell.textContent.trim(); }
    if (text === '') { return null; }
    var n = Number(text);
    return isNaN(n) ? text.toLowerCase() : n;
  }
  function compare(a, b) {
    if (a === b) { return 0; }
    if (a === null) { return 1; }
    if (b === null) { return -1; }
    if (typeof a !== typeof b) { return typeof a === 'number' ? -1 : 1; }
    return a < b ? -1 : 1;
  }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ka = key(a, col), kb = key(b, col);
          if (ka === null || kb === null) { return compare(ka, kb); }
          return dir * compare(ka, kb);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""
