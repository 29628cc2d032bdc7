"""Hostile values for the HTML report and chart, the library's arguments and --deploy names."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import auditor
from auditor.cli import main
from auditor.errors import UsageError

FLAGGED = "real_overfit_flagged"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def set_losses(run: Path, loss: Callable[[int, float], float], key: str = "eval_loss") -> None:
    """Replace every `key` value of the run's histories by `loss(index, value)`."""
    for path in run.rglob("trainer_state.json"):
        document = json.loads(path.read_text())
        for index, entry in enumerate(document["log_history"]):
            if key in entry:
                entry[key] = loss(index, entry[key])
        path.write_text(json.dumps(document, indent=2))


# Losses at the ends of the float range: matplotlib's transforms overflow on them.
EXTREMES: dict[str, tuple[Callable[[int, float], float], Callable[[int, float], float]]] = {
    "largest floats": (lambda i, v: 1.7e308, lambda i, v: 1.7e308),
    "both signs": (lambda i, v: (-1.5e308, 1.4e308)[i % 2], lambda i, v: v),
    "some huge, some sane": (lambda i, v: 1e300 if v > 2.75 else v, lambda i, v: v),
    "subnormal": (lambda i, v: 5e-324 * (i + 1), lambda i, v: 5e-324),
}


@pytest.mark.parametrize("name", sorted(EXTREMES))
def test_extreme_losses_still_make_a_page_and_a_chart(copy_run, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    run = copy_run(FLAGGED, "run")
    evals, trains = EXTREMES[name]
    set_losses(run, evals)
    set_losses(run, trains, key="loss")

    page = cli("scan", "run", "--format", "html", "-o", "report.html")
    chart = cli("plot", "run", "-o", "run.png")

    assert page.exit_code == 0, page.stderr
    assert chart.exit_code == 0, chart.stderr
    text = (tmp_path / "report.html").read_text()
    assert '<figure class="chart" data-chart="0">' in text
    embedded = re.search(r'id="ckpt-chart-data">(.*?)</script>', text, re.DOTALL)
    assert embedded is not None

    def refuse(token: str) -> None:
        raise AssertionError(f"non-finite {token} in the chart data")

    (chart,) = json.loads(embedded.group(1), parse_constant=refuse).values()
    low, high = chart["y"]
    assert low < high
    if name != "subnormal":
        assert "off the chart: loss up to " in text
    assert (tmp_path / "run.png").read_bytes().startswith(b"\x89PNG")


def test_undecodable_names_and_keys_are_drawn_as_escapes(copy_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = os.fsdecode(b"run\xff")
    run = copy_run(FLAGGED, name)
    for path in run.rglob("trainer_state.json"):
        path.write_text(path.read_text().replace('"eval_loss"', '"eval_\\udcff_loss"'))

    page = cli("report", name, "-o", "report.html")
    chart = cli("plot", name, "-o", "run.svg")

    assert page.exit_code == 0, page.stderr
    assert chart.exit_code == 0, chart.stderr
    assert "eval_\\udcff_loss" in (tmp_path / "report.html").read_text()
    assert "run\\udcff" in (tmp_path / "run.svg").read_text()


# --- auditor.audit() arguments -------------------------------------------------------------


def test_audit_takes_a_list_or_tuple_of_paths_and_path_likes(fixtures_dir):
    flagged, healthy = fixtures_dir / FLAGGED, fixtures_dir / "sweep" / "run-0001"
    one = auditor.audit(flagged, str(healthy))

    assert auditor.audit([flagged, str(healthy)]) == one
    assert auditor.audit((str(flagged),), [healthy]) == one
    assert [r.verdict for r in one.runs] == ["overfit", "agree"]


@pytest.mark.parametrize(
    ("argument", "named"),
    [
        (b"fixtures", "got bytes (decode it with os.fsdecode)"),
        ((p for p in ["fixtures"]), "got generator"),
        (3, "got int"),
        (None, "got NoneType"),
        ([["fixtures"]], "got list"),
        ({"fixtures"}, "got set"),
    ],
    ids=["bytes", "generator", "int", "None", "nested list", "set"],
)
def test_audit_refuses_other_arguments_naming_what_it_takes(argument, named):
    with pytest.raises(UsageError) as caught:
        auditor.audit(argument)
    message = str(caught.value)
    assert message.startswith("audit() takes paths as str or os.PathLike (such as pathlib.Path)")
    assert message.endswith(named)


# --- --deploy names ---------------------------------------------------------------------------


def test_deploy_a_checkpoint_named_with_leading_zeros(copy_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = copy_run(FLAGGED, "run")
    (run / "checkpoint-90").rename(run / "checkpoint-00090")

    shipped = cli("check", "--deploy", "run/checkpoint-00090")
    safe = cli("check", "--deploy", "run/checkpoint-30/")

    assert shipped.exit_code == 1, shipped.stderr
    assert "gate: FAIL: deploying checkpoint-00090: compare checkpoint-30 with " in shipped.stderr
    assert safe.exit_code == 0, safe.stderr
    assert "gate: pass" in safe.stderr
