"""Invariants of the audit over random log histories written as real run folders."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import auditor
from auditor.config import Config
from auditor.render import render
from auditor.results import VERDICTS

# "ci" keeps the suite well under a minute; HYPOTHESIS_PROFILE=thorough searches harder.
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=60, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_EPSILON = 1e-9

finite = st.floats(0.05, 4.0)
hostile = st.sampled_from([0.0, -0.5, math.nan, math.inf, -math.inf, 1e300, None, "0.5", True])
junk = st.sampled_from([1, "loss", None, [], {"epoch": 1.0}, {"loss": 0.1}, {"step": "7"}])


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[Any], list[int]]:
    """A Trainer-like history (train logs, evaluations every 10 steps), then damaged: junk
    entries, steps logged twice (a resumed run), entries out of order, hostile values, missing
    keys. Returns the history and the steps saved as checkpoint folders."""
    evaluations = draw(st.integers(1, 8))
    history: list[Any] = []
    for step in range(10, 10 * evaluations + 1, 10):
        # Train losses that fall faster than eval losses make overfit picks happen.
        history.append({"epoch": step / 100, "loss": draw(finite) * 10 / step, "step": step - 5})
        if draw(st.booleans()):
            history.append({"epoch": step / 100, "loss": draw(finite) * 10 / step, "step": step})
        history.append({"epoch": step / 100, "eval_loss": draw(finite), "step": step})
    history.append({"train_loss": draw(finite), "step": 10 * evaluations})
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(history)))
        damage = draw(st.sampled_from(["junk", "repeat", "swap", "hostile", "no step"]))
        if damage == "junk":
            history.insert(at, draw(junk))
            continue
        index = min(at, len(history) - 1)
        entry = history[index]
        if not isinstance(entry, dict):
            continue
        if damage == "repeat":
            key = "eval_loss" if "eval_loss" in entry else "loss"
            history.append({**entry, key: draw(finite)})
        elif damage == "swap":
            other = draw(st.integers(0, len(history) - 1))
            history[index], history[other] = history[other], history[index]
        elif damage == "hostile":
            key = "eval_loss" if "eval_loss" in entry else "loss"
            history[index] = {**entry, key: draw(hostile)}
        else:
            history[index] = {k: v for k, v in entry.items() if k != "step"}
    eval_steps = list(range(10, 10 * evaluations + 1, 10))
    saved = draw(st.lists(st.sampled_from([*eval_steps, 5, 15]), max_size=6, unique=True))
    return history, sorted(saved)


def _step(entry: Any) -> int | None:
    if not isinstance(entry, dict):
        return None
    step = entry.get("step")
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        return None
    return int(step) if float(step).is_integer() else None


#: How a trainer_state.json may be laid out: as the Trainer writes it, compact (a tool that
#: rewrote the file), and re-indented (`python -m json.tool`).
LAYOUTS = {
    "trainer": lambda state: json.dumps(state, indent=2, sort_keys=True) + "\n",
    "compact": lambda state: json.dumps(state, separators=(",", ":")),
    "reindented": lambda state: json.dumps(state, indent=4),
}


def write_run(
    root: Path, history: list[Any], saved: list[int], layout: str = "compact", name: str = "run"
) -> Path:
    """Write the run as the Trainer does: each checkpoint holds the history up to its step,
    with the Trainer's other fields, each file laid out as `layout` says."""
    run = root / name
    run.mkdir()
    last = max([s for s in map(_step, history) if s is not None] + saved + [0])
    write = LAYOUTS[layout]

    def state(step: int, log_history: list[Any]) -> dict[str, Any]:
        return {
            "best_global_step": None,
            "best_metric": None,
            "best_model_checkpoint": None,
            "epoch": step / 100,
            "eval_steps": 10,
            "global_step": step,
            "log_history": log_history,
            "logging_steps": 5,
            "max_steps": last,
            "num_train_epochs": 1,
            "save_steps": 10,
            "total_flos": 0.0,
            "train_batch_size": 8,
        }

    (run / "trainer_state.json").write_text(write(state(last, history)))
    for step in saved:
        folder = run / f"checkpoint-{step}"
        folder.mkdir()
        own = [e for e in history if (_step(e) or 0) <= step]
        (folder / "trainer_state.json").write_text(write(state(step, own)))
    return run


def strict(value: Any) -> Any:
    """`value` as strict JSON gives it back: non-finite numbers None, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def overfit(eval_loss: float, train_loss: float | None) -> float:
    """SPEC section 4, written out again here."""
    if train_loss is None or eval_loss <= 0:
        return 0.0
    return max(0.0, eval_loss - train_loss) / eval_loss


def last_logged(history: list[Any], step: int) -> Any:
    """The eval_loss the last entry at `step` carries (the same step logged twice: later wins)."""
    value = None
    for entry in history:
        if _step(entry) == step and "eval_loss" in entry:
            value = entry["eval_loss"]
    return value


@given(run=runs())
@settings(max_examples=settings().max_examples)
def test_audit_invariants_hold_on_random_histories(tmp_path_factory, run):
    history, saved = run
    root = tmp_path_factory.mktemp("prop")
    run_dir = write_run(root, history, saved)
    config = Config()

    result = auditor.audit(run_dir, config=config)

    assert len(result.runs) == 1
    audited = result.runs[0]
    assert audited.error is None
    assert audited.verdict in VERDICTS
    event(f"verdict {audited.verdict}")  # --hypothesis-show-statistics: every verdict occurs
    rows = {row.step: row for row in audited.checkpoints}
    assert sorted(rows) == [row.step for row in audited.checkpoints]

    for row in audited.checkpoints:
        if row.eval_loss is not None:
            expected = last_logged(history, row.step)
            assert isinstance(expected, (int, float)) and not isinstance(expected, bool)
            assert row.eval_loss == expected or (math.isnan(row.eval_loss) and expected != expected)
        score = row.score
        if score is not None and math.isfinite(score.total):
            parts = (score.eval, score.gap, score.perplexity, score.improvement)
            assert all(p is not None and math.isfinite(p) for p in parts)
            assert math.isclose(sum(parts), score.total, rel_tol=1e-9, abs_tol=_EPSILON)
            assert row.eval_loss is not None and math.isfinite(row.eval_loss)
        if row.candidate:
            assert score is not None and math.isfinite(score.total)
            # Without checkpoint folders every evaluated step is a candidate (SPEC section 4).
            assert audited.history_only or (run_dir / str(row.checkpoint)).is_dir()
            assert row.on_disk or audited.history_only

    candidates = [row for row in audited.checkpoints if row.candidate]
    for pick in (audited.eval_only_pick, audited.scorer_pick):
        if pick is None:
            assert not candidates
            continue
        row = rows[pick.step]
        assert row.candidate and row.checkpoint == pick.checkpoint
        assert audited.history_only == (not saved)
        if saved:
            assert (run_dir / str(pick.checkpoint) / "trainer_state.json").is_file()
    if candidates:
        eval_only, best = rows[audited.eval_only_pick.step], rows[audited.scorer_pick.step]
        assert eval_only.eval_loss == min(r.eval_loss for r in candidates)
        assert best.score.total == min(r.score.total for r in candidates)
        margin = overfit(eval_only.eval_loss, eval_only.train_loss) - overfit(
            best.eval_loss, best.train_loss
        )
        evidence = audited.evidence
        if audited.flagged:
            assert audited.verdict == "overfit" and eval_only.step != best.step
            assert margin >= config.min_gap_delta - _EPSILON
            assert evidence is not None and evidence.outcome == "flagged"
        elif eval_only.step != best.step:
            assert audited.verdict == "differs" and evidence is not None
            if evidence.outcome == "gap_below_threshold":
                assert margin < config.min_gap_delta + _EPSILON
            else:
                assert margin >= config.min_gap_delta - _EPSILON
            if evidence.outcome == "eval_advantage_beyond_noise":
                assert evidence.eval_noise is not None
                assert evidence.eval_delta > 2 * evidence.eval_noise - _EPSILON
        else:
            assert audited.verdict == "agree" and evidence is None
    else:
        assert audited.verdict == "no_candidates" and not audited.flagged

    report = json.loads(render(result, "json"))
    assert report == strict(result.to_dict())


@given(run=runs())
def test_every_format_renders_random_histories(tmp_path_factory, run):
    history, saved = run
    run_dir = write_run(tmp_path_factory.mktemp("fmt"), history, saved)
    result = auditor.audit(run_dir)

    for fmt in ("table", "json", "csv", "markdown"):
        for view in ("runs", "checkpoints"):
            assert isinstance(render(result, fmt, view), str)


@given(run=runs())
def test_the_file_layout_never_changes_the_report(tmp_path_factory, run):
    # The same histories, written as the Trainer writes them, compactly and re-indented.
    history, saved = run
    root = tmp_path_factory.mktemp("layout")
    reports = {}
    for layout in LAYOUTS:
        run_dir = write_run(root, history, saved, layout, name=layout)
        text = render(auditor.audit(run_dir), "json")
        reports[layout] = text.replace(json.dumps(str(run_dir))[1:-1], "RUN")
    assert reports["compact"] == reports["trainer"]
    assert reports["reindented"] == reports["trainer"]
