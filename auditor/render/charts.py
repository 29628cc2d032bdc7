"""The HTML report's charts: each run's curves as JSON, drawn in the page by the vendored uPlot."""

from __future__ import annotations

import json
import math
from functools import cache
from importlib.resources import files
from typing import Any

from ..curves import drawn, overfit_spans, thin, too_large, y_range
from ..results import CheckpointResult, RunResult

#: A train curve longer than this is thinned to its per-bucket extremes: a 500-run page must
#: stay a few MB, and the eye cannot tell 20,000 points from 600 on a chart 1000 pixels wide.
MAX_POINTS = 600

#: Beyond this many evaluations a dot per evaluation is noise: the line alone is drawn.
MAX_EVAL_MARKERS = 150


def chart_data(run: RunResult) -> dict[str, Any]:
    """Return what the page needs to draw `run`'s chart: train and eval curves (thinned),
    checkpoints on disk, both picks, the overfitting spans and the y range."""
    train = thin([(s, v) for s, v in run.train_losses if drawn(v)], MAX_POINTS)
    evals = thin(
        [
            (c.step, c.eval_loss)
            for c in run.checkpoints
            if c.eval_loss is not None and drawn(c.eval_loss)
        ],
        MAX_POINTS,
    )
    low, high, clipped = y_range(run, [v for _, v in train] + [v for _, v in evals])
    beyond = [v for v in too_large(run) if v > 0]
    if beyond:
        clipped = max([*beyond, clipped or 0.0])
    return {
        "train": _columns(train),
        "eval": _columns(evals),
        "markers": len(evals) <= MAX_EVAL_MARKERS,
        "key": run.eval_key or "eval loss",
        "disk": [c.step for c in run.checkpoints if c.on_disk],
        "broken": [
            c.step
            for c in run.checkpoints
            if c.eval_loss is not None and not math.isfinite(c.eval_loss)
        ],
        "evalOnly": _point(run.row(run.eval_only_pick)),
        "scorer": _point(run.row(run.scorer_pick)),
        "smoothed": _point(run.row(run.smoothed_pick)),
        "spans": overfit_spans(run),
        "y": [_round(low), _round(high)],
        "clipped": clipped,
    }


def charts_json(data: dict[str, dict[str, Any]]) -> str:
    """Return the charts' data as JSON safe inside a <script> element."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    # "</script>" or "<!--" in a folder's eval key must not end the element early.
    return text.replace("<", "\\u003c")


@cache
def uplot_assets() -> tuple[str, str]:
    """Return the vendored uPlot's script and style sheet."""
    folder = files(__package__ or "auditor.render") / "vendor" / "uplot"
    return (
        (folder / "uPlot.iife.min.js").read_text(encoding="utf-8"),
        (folder / "uPlot.min.css").read_text(encoding="utf-8"),
    )


def _columns(points: list[tuple[int, float]]) -> list[list[float]]:
    return [[s for s, _ in points], [_round(v) for _, v in points]]


def _point(row: CheckpointResult | None) -> list[float] | None:
    if row is None or row.eval_loss is None or not drawn(row.eval_loss):
        return None
    return [row.step, _round(row.eval_loss)]


def _round(value: float) -> float:
    # Five significant digits are finer than a chart shows, and halve the page.
    return float(f"{value:.5g}")


#: Draws each chart when it comes near the viewport: a 500-run page opens as fast as a short
#: one. Hovering shows the step and every value in the legend; dragging zooms, a double click
#: zooms out.
SCRIPT = r"""
(function () {
  var source = document.getElementById('ckpt-chart-data');
  if (!source || typeof uPlot === 'undefined') { return; }
  var data = JSON.parse(source.textContent);
  var drawn = [];
  var TRAIN = '#4c72b0', EVAL = '#dd8452', EVAL_ONLY = '#c0392b', SCORER = '#1e8449';
  var SMOOTHED = '#6c3483';
  var SHADE = 'rgba(245, 183, 177, 0.45)';
  var EAGER = 3;

  function aligned(d) {
    var steps = {}, i;
    for (i = 0; i < d.train[0].length; i++) { steps[d.train[0][i]] = true; }
    for (i = 0; i < d.eval[0].length; i++) { steps[d.eval[0][i]] = true; }
    var xs = Object.keys(steps).map(Number).sort(function (a, b) { return a - b; });
    var at = {};
    xs.forEach(function (x, k) { at[x] = k; });
    function column(pairs) {
      var out = xs.map(function () { return null; });
      for (var j = 0; j < pairs[0].length; j++) { out[at[pairs[0][j]]] = pairs[1][j]; }
      return out;
    }
    function pick(point) {
      var out = xs.map(function () { return null; });
      if (point && at[point[0]] !== undefined) { out[at[point[0]]] = point[1]; }
      return out;
    }
    return [xs, column(d.train), column(d.eval), pick(d.evalOnly), pick(d.scorer),
      pick(d.smoothed)];
  }

  function marks(d) {
    return function (u) {
      var ctx = u.ctx, box = u.bbox, bottom = box.top + box.height;
      ctx.save();
      ctx.fillStyle = SHADE;
      d.spans.forEach(function (span) {
        var a = u.valToPos(span[0], 'x', true), b = u.valToPos(span[1], 'x', true);
        var left = Math.max(a, box.left), right = Math.min(b, box.left + box.width);
        if (right > left) { ctx.fillRect(left, box.top, right - left, box.height); }
      });
      ctx.strokeStyle = '#555555';
      ctx.lineWidth = 1.5 * devicePixelRatio;
      d.disk.forEach(function (step) {
        var x = u.valToPos(step, 'x', true);
        if (x < box.left || x > box.left + box.width) { return; }
        ctx.beginPath(); ctx.moveTo(x, bottom); ctx.lineTo(x, bottom - 8 * devicePixelRatio);
        ctx.stroke();
      });
      ctx.strokeStyle = EVAL;
      d.broken.forEach(function (step) {
        var x = u.valToPos(step, 'x', true), y = box.top + 6 * devicePixelRatio;
        var r = 3 * devicePixelRatio;
        if (x < box.left || x > box.left + box.width) { return; }
        ctx.beginPath(); ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r);
        ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r); ctx.stroke();
      });
      ctx.restore();
    };
  }

  function picked(label, colour) {
    return { label: label, stroke: colour, width: 0, paths: function () { return null; },
      points: { show: true, size: 15, width: 2.5, stroke: colour, fill: 'transparent' } };
  }

  function draw(figure) {
    var d = data[figure.getAttribute('data-chart')];
    var holder = figure.querySelector('.plot');
    if (!d || !holder || holder.firstChild) { return; }
    var width = Math.min(holder.clientWidth || 900, 1000);
    var options = {
      width: width, height: 300,
      scales: { x: { time: false }, y: { range: d.y } },
      axes: [{ label: 'step' }, { label: 'loss' }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      hooks: { drawClear: [marks(d)] },
      series: [
        { label: 'step' },
        { label: 'train loss', stroke: TRAIN, width: 1.2, spanGaps: true,
          points: { show: false } },
        { label: d.key, stroke: EVAL, width: 1.8, spanGaps: true,
          points: { show: d.markers, size: 5, fill: '#ffffff' } },
        picked('eval-only pick', EVAL_ONLY),
        picked("scorer's pick", SCORER),
        picked('smoothed pick', SMOOTHED)
      ]
    };
    var chart = new uPlot(options, aligned(d), holder);
    // Scripts run on the page (and its tests) reach each chart through its figure.
    figure.uplot = chart;
    drawn.push(chart);
    if (!window.ckptAuditFirstChart) { window.ckptAuditFirstChart = performance.now(); }
  }

  var figures = Array.prototype.slice.call(document.querySelectorAll('figure.chart'));
  // The first charts are drawn at once, wherever they are: a reader who scrolls or follows a
  // link from the findings finds them ready.
  figures.slice(0, EAGER).forEach(draw);
  if ('IntersectionObserver' in window) {
    var watcher = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) { watcher.unobserve(entry.target); draw(entry.target); }
      });
    }, { rootMargin: '600px 0px' });
    figures.forEach(function (figure) { watcher.observe(figure); });
  } else {
    figures.forEach(draw);
  }
  var pending = null;
  window.addEventListener('resize', function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      drawn.forEach(function (chart) {
        var width = Math.min(chart.root.parentNode.clientWidth || 900, 1000);
        chart.setSize({ width: width, height: 300 });
      });
    }, 150);
  });
})();
"""
