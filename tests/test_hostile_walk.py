"""The walker on symlink loops and aliases, and memory on a 50 MB history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import auditor
from auditor.cli import main


@pytest.fixture
def linked_tree(copy_run, monkeypatch, tmp_path: Path) -> Path:
    """Two runs under outputs/, with symlinks back up the tree, onto a run and onto themselves."""
    monkeypatch.chdir(tmp_path)
    healthy = copy_run("examples/lm_healthy", "outputs/healthy")
    flagged = copy_run("real_overfit_flagged", "outputs/nested/flagged")
    outputs = tmp_path / "outputs"
    (outputs / "nested" / "up").symlink_to(outputs)  # a loop through an ancestor
    (outputs / "alias").symlink_to(flagged)  # a second name for a run
    (outputs / "self").symlink_to("self")  # a link to itself
    (outputs / "gone").symlink_to(outputs / "missing")  # a dangling link
    (healthy / "checkpoint-300" / "back").symlink_to(healthy)  # inside a checkpoint
    return outputs


def test_symlink_loops_end_and_each_run_is_reported_once(linked_tree):
    runs = auditor.audit(linked_tree).runs

    real = sorted(os.path.realpath(r.run_dir) for r in runs)
    assert real == sorted(
        os.path.realpath(linked_tree / name) for name in ("healthy", "nested/flagged")
    )
    by_place = sorted(runs, key=lambda r: os.path.realpath(r.run_dir))
    assert [r.verdict for r in by_place] == ["agree", "overfit"]


def test_a_run_named_twice_on_the_command_line_is_reported_once(linked_tree):
    result = CliRunner().invoke(
        main, ["scan", "outputs/alias", "outputs", "outputs/nested/flagged", "--format", "json"]
    )

    assert result.exit_code == 0
    dirs = [r["run_dir"] for r in json.loads(result.stdout)["runs"]]
    assert dirs == ["outputs/alias", "outputs/healthy"]


def _history(steps: int) -> str:
    """A log_history in the Trainer's shape: a train log every step, an evaluation every 1000."""
    parts = []
    for i in range(1, steps + 1):
        epoch = i / steps * 3
        grad_norm = (i * 7919 % 1000) / 333
        learning_rate = 5e-5 * (1 - i / steps)
        loss = 2.0 - i / steps + (i * 104729 % 1000) / 1e4
        parts.append(
            f'{{"epoch": {epoch:.6f}, "grad_norm": {grad_norm:.17g}, "learning_rate": '
            f'{learning_rate:.17g}, "loss": {loss:.17g}, "step": {i}}}'
        )
        if i % 1000 == 0:
            eval_loss = 1.5 + (i / steps - 0.6) ** 2
            parts.append(
                f'{{"epoch": {epoch:.6f}, "eval_loss": {eval_loss:.17g}, "eval_runtime": 1.2, '
                f'"step": {i}}}'
            )
    return ",\n".join(parts)


_PEAK = """
import resource, sys
import auditor
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = auditor.audit(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.runs[0].verdict, (after - before) * 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux only")
def test_memory_stays_bounded_on_a_50_mb_history(tmp_path):
    steps = 340_000
    run = tmp_path / "big"
    final = run / f"checkpoint-{steps}"
    final.mkdir(parents=True)
    text = f'{{"global_step": {steps}, "log_history": [\n{_history(steps)}\n]}}'
    (run / "trainer_state.json").write_text(text)
    # The final save holds the same history, as the Trainer writes it.
    os.link(run / "trainer_state.json", final / "trainer_state.json")
    size = len(text)
    assert size > 45_000_000

    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(run)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    verdict, growth = out[0], int(out[1])

    assert verdict in ("agree", "differs")
    # Parsed JSON costs a few times its text, and the run's two files are both read (the
    # history and the final checkpoint's own, to check they belong together).
    assert growth < 8 * 2 * size, f"peak memory grew {growth / 1e6:.0f} MB"
