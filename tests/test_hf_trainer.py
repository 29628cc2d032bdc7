"""sources.hf_trainer: the fast path (older checkpoints read at their ends) agrees with parsing
every file."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from auditor import storage
from auditor.discover import discover
from auditor.sources import hf_trainer as read
from auditor.sources import trainer_ends as skim
from auditor.sources.hf_trainer import load_state, parse_state, read_run
from auditor.sources.trainer_ends import end_ranges, ends_of, parse_entries
from conftest import FIXTURES, FRAMEWORKS

STATE = "trainer_state.json"
ALL_STATE_FILES = sorted(FIXTURES.rglob(STATE))


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read ends small enough that the bundled runs' files (2-25 KB) take the fast path."""
    monkeypatch.setattr(skim, "HEAD_BYTES", 512)
    monkeypatch.setattr(skim, "TAIL_BYTES", 2048)


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every file big enough for the fast path that was parsed whole all the same."""
    paths: list[str] = []

    def recording_parse_state(data: bytes, path: str) -> read.TrainerState:
        if _big_enough(Path(path)):
            paths.append(path)
        return parse_state(data, path)

    monkeypatch.setattr(read, "parse_state", recording_parse_state)
    return paths


def read_ends(path: str) -> skim.Ends | None:
    """The Ends of the file at `path` as the reader takes them: from its two end ranges."""
    data = Path(path).read_bytes()
    parts = [data[start:end] for start, end in end_ranges(len(data))]
    return ends_of(parts[0], parts[-1]) if data else None


def skim_state(path: str) -> SimpleNamespace | None:
    """The global_step and newest entries the fast path reads of a file, or None when it would
    parse the file whole."""
    ends = read_ends(path)
    newest = parse_entries(ends) if ends is not None else None
    if ends is None or newest is None:
        return None
    return SimpleNamespace(global_step=ends.global_step, newest_entries=newest)


def records(path: Path) -> list[read.RunRecord]:
    """Return the records of the Trainer runs below `path` that keep a trainer_state.json
    (the runs of other frameworks under fixtures/frameworks are read by their sources)."""
    return [
        record
        for location in discover([str(path)])
        if location.source == read.NAME and FRAMEWORKS not in Path(location.run_dir).parents
        for record in read_run(location, storage.for_path(location.run_dir))
    ]


def _big_enough(path: Path) -> bool:
    return path.stat().st_size > 512 + 2048


@pytest.mark.parametrize(
    "path",
    [p for p in ALL_STATE_FILES if _big_enough(p)],
    ids=lambda p: str(p.relative_to(FIXTURES)),
)
def test_the_ends_of_every_real_file_agree_with_its_full_parse(small_windows, path):
    ends = skim_state(str(path))
    full = load_state(str(path))
    assert ends is not None, "a Trainer-written file must take the fast path"
    assert ends.global_step == full.global_step
    assert 1 <= len(ends.newest_entries) <= 6
    newest = full.log_history[-len(ends.newest_entries) :]
    assert json.dumps(ends.newest_entries) == json.dumps(newest)  # NaN compares equal as text


def test_the_fast_path_gives_the_same_records_as_parsing_every_file(small_windows, monkeypatch):
    fast = records(FIXTURES)
    monkeypatch.setattr(read, "ends_of", lambda head, tail, entries=6: None)
    slow = records(FIXTURES)
    assert len(fast) == len(slow) >= 17
    for quick, full in zip(fast, slow, strict=True):
        assert quick.run_dir == full.run_dir
        assert quick.history_path == full.history_path
        assert quick.checkpoints == full.checkpoints
        assert quick.warnings == full.warnings


def test_older_checkpoints_are_not_parsed_whole(small_windows, parsed):
    (record,) = records(FIXTURES / "examples" / "lm_overfit_full")
    assert parsed == [record.history_path]
    assert record.history_path.endswith(f"lm_overfit_full/{STATE}")
    assert len(record.checkpoints) == 20 and all(c.usable for c in record.checkpoints)


def test_a_mixed_lineage_folder_is_detected_from_the_tails(small_windows, parsed, copy_run):
    run = copy_run("examples/lm_overfit_full")
    other = FIXTURES / "examples" / "lm_overfit_full_tf4"
    for name in ("checkpoint-100", "checkpoint-260"):
        shutil.copyfile(other / name / STATE, run / name / STATE)

    records_found = records(run)

    # The other training is found from the tails; only each training's newest file is parsed.
    assert sorted(parsed) == sorted([str(run / STATE), str(run / "checkpoint-260" / STATE)])
    by_folder = {c.name: r.training for r in records_found for c in r.checkpoints}
    assert by_folder["checkpoint-100"] == by_folder["checkpoint-260"] != by_folder["checkpoint-200"]
    assert all(c.usable for r in records_found for c in r.checkpoints)
    assert [r.trainings for r in records_found] == [2, 2]


def test_a_changed_newest_loss_is_detected_from_the_tail(small_windows, parsed, copy_run):
    run = copy_run("examples/lm_overfit_full")
    path = run / "checkpoint-200" / STATE
    state = json.loads(path.read_text())
    last_eval = next(e for e in reversed(state["log_history"]) if "eval_loss" in e)
    last_eval["eval_loss"] += 0.001
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")

    first, second = records(run)

    assert second.history_path == str(path), "the changed file is a training of its own"
    assert [c.name for c in second.checkpoints] == ["checkpoint-200"]
    assert "checkpoint-200" not in [c.name for c in first.checkpoints]
    assert 200 in first.overwritten


def test_a_compact_file_falls_back_to_a_full_parse_and_still_counts(
    small_windows, parsed, copy_run
):
    run = copy_run("examples/lm_overfit_full")
    compact = run / "checkpoint-300" / STATE
    compact.write_text(json.dumps(json.loads(compact.read_text()), separators=(",", ":")))
    assert compact.stat().st_size > 512 + 2048
    assert skim_state(str(compact)) is None

    (record,) = records(run)

    assert str(compact) in parsed
    assert all(c.usable for c in record.checkpoints)
    assert record.warnings == ()


def test_a_compact_file_from_another_training_is_still_detected(small_windows, copy_run):
    run = copy_run("examples/lm_overfit_full")
    other = FIXTURES / "examples" / "lm_overfit_full_tf4" / "checkpoint-300" / STATE
    (run / "checkpoint-300" / STATE).write_text(json.dumps(json.loads(other.read_text())))

    first, second = records(run)

    assert [c.name for c in second.checkpoints] == ["checkpoint-300"]
    assert "checkpoint-300" not in [c.name for c in first.checkpoints]


def test_an_unknown_field_after_log_history_means_a_full_parse(small_windows, parsed, copy_run):
    run = copy_run("examples/lm_overfit_full")
    path = run / "checkpoint-300" / STATE
    state = json.loads(path.read_text())
    state["loss_curve"] = [{"step": 1, "loss": 1.0}]  # sorts after log_history, a list
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    assert skim_state(str(path)) is None

    (record,) = records(run)

    assert str(path) in parsed
    assert all(c.usable for c in record.checkpoints)


def test_nan_literals_in_the_tails_are_read(small_windows, parsed):
    run = FIXTURES / "examples" / "lm_diverged"
    tails = [skim_state(str(p)) for p in sorted(run.glob(f"checkpoint-*/{STATE}"))]
    losses = [e.get("loss") for t in tails if t is not None for e in t.newest_entries]
    assert any(isinstance(v, float) and math.isnan(v) for v in losses)

    (record,) = records(run)

    assert parsed == [record.history_path]
    assert record.checkpoints and all(c.usable for c in record.checkpoints)


def test_a_tail_too_short_to_decide_reads_the_whole_file(monkeypatch, parsed, copy_run):
    run = copy_run("examples/lm_overfit_full")
    monkeypatch.setattr(skim, "HEAD_BYTES", 512)
    monkeypatch.setattr(skim, "TAIL_BYTES", 720)  # the closing fields and one entry
    ends = skim_state(str(run / "checkpoint-400" / STATE))
    assert ends is not None and len(ends.newest_entries) < 4

    (record,) = records(run)

    assert len(parsed) > 1
    assert all(c.usable for c in record.checkpoints)


def test_a_cut_short_older_checkpoint_is_listed_but_not_a_candidate(small_windows, copy_run):
    run = copy_run("examples/lm_overfit_full")
    path = run / "checkpoint-200" / STATE
    path.write_bytes(path.read_bytes()[:-40])

    (record,) = records(run)

    assert [c.name for c in record.checkpoints if not c.usable] == ["checkpoint-200"]
    assert any("checkpoint-200" in w and "cut short" in w for w in record.warnings)


def test_the_newest_state_is_chosen_by_the_global_step_in_the_heads(
    small_windows, parsed, copy_run
):
    run = copy_run("examples/lm_overfit_full")
    # The root file is from an earlier save: the newest checkpoint holds the newer history.
    shutil.copyfile(run / "checkpoint-200" / STATE, run / STATE)

    (record,) = records(run)

    assert record.history_path == str(run / "checkpoint-400" / STATE)
    assert parsed == [record.history_path]
    assert all(c.usable for c in record.checkpoints)


def test_a_root_file_whose_middle_is_broken_falls_back_on_the_checkpoints(small_windows, copy_run):
    run = copy_run("examples/lm_overfit_full")
    data = (run / STATE).read_bytes()
    middle = len(data) // 2
    (run / STATE).write_bytes(data[:middle] + b"\x00" + data[middle + 1 :])

    (record,) = records(run)

    assert record.history_path == str(run / "checkpoint-400" / STATE)
    assert any(w.startswith(str(run / STATE)) for w in record.warnings)
