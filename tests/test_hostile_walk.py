"""The walker on symlink loops and aliases, and memory on a 50 MB history."""

from __future__ import annotations

import json
import os
import shutil
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


# --- folders the walk cannot enter, and runs named like checkpoints -------------------------


def as_unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m auditor ARGS` so that file modes apply to it: root reads through them,
    so as root it runs without the capabilities that let it (setpriv drops them)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("as root, denying a folder needs setpriv (util-linux) to drop privileges")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "auditor", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def denied(copy_run, monkeypatch, tmp_path: Path):
    """outputs/ with a flagged run that can be read and, below folders whose permission the
    test takes away, two healthy runs; the permissions come back at teardown."""
    monkeypatch.chdir(tmp_path)
    copy_run("real_overfit_flagged", "outputs/readable")
    copy_run("sweep/run-0001", "outputs/closed")
    copy_run("sweep/run-0001", "outputs/group/inner")
    taken: list[Path] = []

    def deny(folder: str, mode: int = 0) -> None:
        (tmp_path / folder).chmod(mode)
        taken.append(tmp_path / folder)

    yield deny
    for folder in taken:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    ("folder", "mode"),
    [("outputs/closed", 0), ("outputs/group", 0), ("outputs/group", 0o111)],
    ids=["run, no access", "folder on the way, no access", "no listing"],
)
def test_a_folder_the_walk_cannot_enter_fails_the_gate_closed(denied, folder, mode):
    denied(folder, mode)

    gate = as_unprivileged("check", "outputs")
    allowed = as_unprivileged("check", "outputs", "--allow-unreadable")
    scan = as_unprivileged("scan", "outputs", "--format", "json")

    assert gate.returncode == 2, gate.stderr
    message = (
        f"error: {folder}: cannot be listed (Permission denied), so runs below it are not "
        "audited; give read and search permission on it, or pass --allow-unreadable"
    )
    assert message in gate.stderr
    assert "gate: 1 run(s) could not be read; the gate fails closed" in gate.stderr
    assert "Traceback" not in gate.stderr + allowed.stderr + scan.stderr
    # With the unreadable folder accepted, the gate judges the rest: the flagged run fails it.
    assert allowed.returncode == 1, allowed.stderr
    assert scan.returncode == 0
    rows = {r["run_dir"]: r["verdict"] for r in json.loads(scan.stdout)["runs"]}
    assert rows[folder] == "error"


def test_a_path_deeper_than_the_system_allows_fails_the_gate_closed(copy_run, tmp_path):
    source = copy_run("sweep/run-0001", "source")
    limit = os.pathconf(tmp_path, "PC_PATH_MAX")
    name = "d" * 200
    levels = limit // (len(name) + 1) + 1
    # Built level by level from open folders: no path this long can be given to mkdir.
    descriptor = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=descriptor)
            inner = os.open(name, os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
        os.mkdir("run", dir_fd=descriptor)
        state = (source / "trainer_state.json").read_bytes()
        out = os.open("run/trainer_state.json", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=descriptor)
        os.write(out, state)
        os.close(out)
    finally:
        os.close(descriptor)
    (tmp_path / "source").rename(tmp_path / "readable")

    result = CliRunner().invoke(main, ["check", str(tmp_path)])

    assert result.exit_code == 2
    assert (
        "cannot be listed (File name too long), so runs below it are not audited; the path "
        "is longer than the system allows" in result.stderr
    )


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "still training"])
def test_a_run_whose_folder_is_named_checkpoint_n_is_audited(copy_run, tmp_path, finished):
    run = copy_run("real_overfit_flagged", "outputs/checkpoint-5")
    if not finished:
        (run / "trainer_state.json").unlink()  # the Trainer writes it when training ends

    walked = CliRunner().invoke(main, ["check", str(tmp_path / "outputs"), "--format", "json"])
    given = CliRunner().invoke(main, ["check", str(run), "--format", "json"])

    for result in (walked, given):
        assert result.exit_code == 1, result.stderr
        (report,) = json.loads(result.stdout)["runs"]
        assert report["run_dir"] == str(run)
        assert report["verdict"] == "overfit"
        assert report["eval_only_pick"]["checkpoint"] == "checkpoint-90"


# The peak resident size of this process alone: ru_maxrss would count the parent's size at the
# fork (the test process holds the history it wrote), /proc's VmHWM starts again at exec.
_HIGH_WATER = """
def high_water():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
"""
_PARSE_PEAK = (
    _HIGH_WATER
    + """
import sys
from auditor.fastjson import loads
before = high_water()
with open(sys.argv[1], "rb") as handle:
    document = loads(handle.read())
print(len(document["log_history"]), high_water() - before)
"""
)
_AUDIT_PEAK = (
    _HIGH_WATER
    + """
import os, sys
import auditor
before = high_water()
result = auditor.audit(os.path.dirname(sys.argv[1]))
print(result.runs[0].verdict, high_water() - before)
"""
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux only")
def test_a_long_history_costs_little_more_memory_than_parsing_it(tmp_path):
    steps = 200_000
    history = []
    for i in range(1, steps + 1):
        history.append(
            {
                "epoch": i / steps * 3,
                "grad_norm": (i * 7919 % 1000) / 333,
                "loss": 2 - i / steps,
                "learning_rate": 5e-5 * (1 - i / steps),
                "step": i,
            }
        )
        if i % 1000 == 0:
            history.append(
                {
                    "epoch": i / steps * 3,
                    "eval_loss": 1.5 + (i / steps - 0.6) ** 2,
                    "eval_runtime": 1.2,
                    "step": i,
                }
            )
    run = tmp_path / "long"
    (run / f"checkpoint-{steps}").mkdir(parents=True)
    # As the Trainer writes it: json.dumps(indent=2, sort_keys=True), with its other fields.
    state = {
        "best_global_step": None,
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": 3.0,
        "eval_steps": 1000,
        "global_step": steps,
        "log_history": history,
        "logging_steps": 1,
        "max_steps": steps,
        "num_input_tokens_seen": 0,
        "num_train_epochs": 3,
        "save_steps": 1000,
        "total_flos": 0.0,
        "train_batch_size": 8,
        "trial_name": None,
        "trial_params": None,
    }
    text = json.dumps(state, indent=2, sort_keys=True)
    (run / "trainer_state.json").write_text(text + "\n")
    os.link(run / "trainer_state.json", run / f"checkpoint-{steps}" / "trainer_state.json")
    del history

    def peak(script: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", script, str(run / "trainer_state.json")],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.split()
        return int(out[1])

    parsing = peak(_PARSE_PEAK)  # the file's bytes and its parsed history: the floor
    auditing = peak(_AUDIT_PEAK)

    # No copy of the text beside the bytes (stripped, decoded): a 320 MB history used to peak
    # at 1.96 GB.
    assert auditing < parsing + len(text) // 2, (
        f"auditing grew {auditing / 1e6:.0f} MB, parsing {parsing / 1e6:.0f} MB, "
        f"for {len(text) / 1e6:.0f} MB"
    )


def test_a_newest_checkpoint_that_cannot_be_read_is_not_a_save_in_progress(copy_run, tmp_path):
    run = copy_run("real_overfit_flagged", "live")
    (run / "trainer_state.json").unlink()  # training still running: no root file yet
    newest = run / "checkpoint-100" / "trainer_state.json"
    newest.chmod(0)
    try:
        result = as_unprivileged("scan", str(run))
    finally:
        newest.chmod(0o644)

    assert result.returncode == 0, result.stderr
    assert (
        "checkpoint-100/trainer_state.json cannot be read (Permission denied); check its "
        "permissions: not a candidate" in result.stderr
    )
    assert "save in progress" not in result.stderr
