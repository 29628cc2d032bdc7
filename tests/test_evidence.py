"""The v2 flag's evidence (SPEC section 4) against an independent computation from the raw files.

The reference below reads each run's trainer_state.json with `json` and applies the SPEC's
formulas with `statistics.median`; it shares no code with the auditor.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import struct

import pandas as pd
import pytest
import yaml

import auditor
from auditor import evidence
from auditor.config import Config
from conftest import FIXTURES, extra

# One row per folder; a folder of several trainings (a list) is checked in test_fixtures.py.
EXPECTED = {
    name: want
    for name, want in yaml.safe_load((FIXTURES / "EXPECTED.yaml").read_text()).items()
    if isinstance(want, dict)
}
RESULT = auditor.audit(FIXTURES)

# The SPEC's word lists, typed again here on purpose.
LOWER = {"loss", "wer", "cer", "ter", "error", "err", "perplexity", "ppl", "mae", "mse", "rmse"}
HIGHER = set(
    [
        "accuracy",
        "accuracies",
        "acc",
        "f1",
        "precision",
        "recall",
        "auc",
        "bleu",
        "sacrebleu",
        "rouge",
        "rouge1",
        "rouge2",
        "rougel",
        "rougelsum",
        "meteor",
        "chrf",
        "exact",
        "matthews",
        "mcc",
        "pearson",
        "pearsonr",
        "spearman",
        "spearmanr",
        "bertscore",
        "map",
        "ndcg",
        "mrr",
        "iou",
        "dice",
        "r2",
        "margins",
    ]
)


def run_of(name: str) -> auditor.RunResult:
    return next(r for r in RESULT.runs if r.run_dir == str(FIXTURES / name))


def history(name: str) -> list[dict]:
    state = FIXTURES / name / "trainer_state.json"
    if state.exists():
        return json.loads(state.read_text())["log_history"]
    # A run whose history is in TensorBoard event files: the Trainer's own file, kept beside
    # the run, at the float32 precision that event files hold.
    reference = json.loads((state.parent.parent / "trainer_state.reference.json").read_text())
    return [
        {
            k: struct.unpack("<f", struct.pack("<f", v))[0] if type(v) is float else v
            for k, v in entry.items()
        }
        for entry in reference["log_history"]
    ]


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def evaluations(log: list[dict]) -> dict[int, dict]:
    """step -> every eval_* value logged at that step, later entries winning."""
    merged: dict[int, dict] = {}
    for entry in log:
        values = {k: v for k, v in entry.items() if k.startswith("eval_")}
        if values:
            merged.setdefault(entry["step"], {}).update(values)
    return merged


def curve(merged: dict[int, dict], key: str) -> list[float]:
    return [merged[s][key] for s in sorted(merged) if is_number(merged[s].get(key))]


def sigma(values: list[float]) -> float | None:
    if len(values) < 5:
        return None
    d = [values[i - 1] - 2 * values[i] + values[i + 1] for i in range(1, len(values) - 1)]
    m = statistics.median(d)
    return 1.4826 * statistics.median([abs(x - m) for x in d]) / math.sqrt(6)


def train_loss_at(log: list[dict], step: int) -> float | None:
    found: dict[int, float] = {}
    for entry in log:
        if "loss" in entry:
            found[entry["step"]] = entry["loss"]
    before = [s for s in found if s <= step]
    return found[max(before)] if before else None


def overfit(log: list[dict], merged: dict[int, dict], key: str, step: int) -> float:
    eval_loss, train_loss = merged[step][key], train_loss_at(log, step)
    if train_loss is None or eval_loss <= 0:
        return 0.0
    return max(0.0, eval_loss - train_loss) / eval_loss


def direction(key: str) -> str | None:
    tokens = [t for t in re.split(r"[_/\- ]", key[len("eval_") :].lower()) if t]
    if tokens and tokens[-1] in LOWER:
        return "lower"
    if any(t in HIGHER for t in tokens):
        return "higher"
    return None


def reference(name: str, judged: int, scorer: int, key: str, k: float = 2.0, gap: float = 0.1):
    """Return the SPEC's evidence dict for shipping step `judged` instead of step `scorer`."""
    log = history(name)
    merged = evaluations(log)
    noise = sigma(curve(merged, key))
    delta = merged[scorer][key] - merged[judged][key]
    prefix = key[: -len("loss")]
    at = merged[judged]
    runtime, per_second = at.get(prefix + "runtime"), at.get(prefix + "samples_per_second")
    samples = round(runtime * per_second) if is_number(runtime) and is_number(per_second) else None
    metrics = []
    for other in sorted({k2 for values in merged.values() for k2 in values}):
        a, b = merged[judged].get(other), merged[scorer].get(other)
        better = direction(other)
        if other == key or better is None or not (is_number(a) and is_number(b)):
            continue
        noise_m = sigma(curve(merged, other))
        band = k * noise_m if noise_m is not None else 0.0
        lead = a - b if better == "higher" else b - a
        favours = "eval_only" if lead > band else "scorer" if -lead > band else "neither"
        metrics.append(
            {
                "key": other,
                "direction": better,
                "eval_only": a,
                "scorer": b,
                "noise": noise_m,
                "favours": favours,
            }
        )
    margin = overfit(log, merged, key, judged) - overfit(log, merged, key, scorer)
    if margin < gap:
        outcome = "gap_below_threshold"
    elif noise is not None and delta > k * noise:
        outcome = "eval_advantage_beyond_noise"
    elif any(m["favours"] == "eval_only" for m in metrics):
        outcome = "contradicted_by_metric"
    else:
        outcome = "flagged"
    return {
        "eval_noise": noise,
        "eval_delta": delta,
        "eval_samples": samples,
        "metrics": metrics,
        "outcome": outcome,
    }


def assert_same(got: dict, want: dict) -> None:
    assert got["outcome"] == want["outcome"]
    assert got["eval_samples"] == want["eval_samples"]
    for field in ("eval_noise", "eval_delta"):
        assert got[field] == pytest.approx(want[field], rel=1e-12, abs=1e-15), field
    assert [m["key"] for m in got["metrics"]] == [m["key"] for m in want["metrics"]]
    for mine, theirs in zip(got["metrics"], want["metrics"], strict=True):
        assert (mine["direction"], mine["favours"]) == (theirs["direction"], theirs["favours"])
        for field in ("eval_only", "scorer", "noise"):
            assert mine[field] == pytest.approx(theirs[field], rel=1e-12), field


DIFFERING = sorted(name for name, want in EXPECTED.items() if want["outcome"] is not None)
JUDGED_TRAINER = sorted(name for name, want in EXPECTED.items() if "trainer_best_outcome" in want)


def test_the_fixtures_cover_every_outcome():
    assert {EXPECTED[name]["outcome"] for name in DIFFERING} == {
        "flagged",
        "gap_below_threshold",
        "eval_advantage_beyond_noise",
        "contradicted_by_metric",
    }


JUDGED = [(name, "evidence") for name in DIFFERING] + [
    (name, "trainer_best_evidence") for name in JUDGED_TRAINER
]


@pytest.mark.parametrize(("name", "field"), JUDGED)
def test_evidence_equals_the_spec_computed_from_the_raw_file(name, field):
    # The JSON's evidence on the eval-only pick, and on the Trainer's best where it is judged.
    want = EXPECTED[name]
    judged, outcome = {
        "evidence": (want["eval_only"], want["outcome"]),
        "trainer_best_evidence": (want["trainer_best"], want.get("trainer_best_outcome")),
    }[field]
    got = run_of(name).to_dict()[field]
    assert_same(got, reference(name, judged, want["scorer"], want.get("eval_key", "eval_loss")))
    assert got["outcome"] == outcome


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - set(DIFFERING)))
def test_runs_whose_picks_agree_carry_no_evidence(name):
    assert run_of(name).to_dict()["evidence"] is None


@pytest.mark.parametrize("name", DIFFERING)
def test_csv_and_frame_carry_the_evidence(name):
    frame = RESULT.to_frame()
    row = frame[frame["run_dir"] == str(FIXTURES / name)].iloc[0]
    evidence = run_of(name).evidence
    assert row["outcome"] == evidence.outcome
    assert row["eval_delta"] == evidence.eval_delta
    metric = evidence.contradicting_metric
    named = row["contradicting_metric"]
    assert (None if pd.isna(named) else named) == (metric.key if metric else None)
    assert isinstance(row["decision"], str) and row["decision"]


def test_with_the_evidence_checks_off_the_flag_is_the_gap_alone():
    gap_only = auditor.audit(FIXTURES, config=Config(noise_k=None, task_metrics=False))
    for run in gap_only.runs:
        name = run.run_dir[len(str(FIXTURES)) + 1 :]
        want = EXPECTED.get(name)
        if want is None or want["outcome"] is None:
            continue
        log, key = history(name), want.get("eval_key", "eval_loss")
        merged = evaluations(log)
        margin = overfit(log, merged, key, want["eval_only"]) - overfit(
            log, merged, key, want["scorer"]
        )
        assert run.flagged == (margin >= 0.1), name


def test_a_contradicting_metric_can_be_ignored_by_the_config():
    name = "evidence/metric_contradicts"
    ignored = auditor.audit(
        FIXTURES / name, config=Config(metrics={"eval_accuracy": "ignore"})
    ).runs[0]
    assert ignored.verdict == "overfit" and ignored.evidence.metrics == ()
    off = auditor.audit(FIXTURES / name, config=Config(task_metrics=False)).runs[0]
    assert off.verdict == "overfit"


def test_the_noisy_dip_is_a_dip():
    want = EXPECTED["evidence/noisy_dip"]
    merged = evaluations(history("evidence/noisy_dip"))
    steps = sorted(merged)
    at = steps.index(want["eval_only"])
    values = [merged[s]["eval_loss"] for s in steps]
    assert values[at] < values[at - 1] and values[at] < values[at + 1]


def test_spec_five_epoch_example_is_flagged_with_its_scores(tmp_path):
    from click.testing import CliRunner

    extra("transformers")
    from transformers import TrainerState

    from auditor.cli import main

    # The SPEC's section 6 example: checkpoint-300 (eval 0.8, train 0.75) is the scorer's pick,
    # checkpoint-400 (eval 0.75) the eval-only pick, 0.05 lower: within 2 x 0.0908.
    evals = {
        100: (1.4, 1.5),
        200: (0.9, 0.85),
        300: (0.8, 0.75),
        400: (0.75, 0.55),
        500: (0.9, 0.4),
    }
    log = []
    for epoch, (step, (eval_loss, train_loss)) in enumerate(sorted(evals.items()), start=1):
        log.append({"epoch": float(epoch), "loss": train_loss, "step": step})
        log.append(
            {
                "epoch": float(epoch),
                "eval_loss": eval_loss,
                "eval_runtime": 4.0,
                "eval_samples_per_second": 100.0,
                "step": step,
            }
        )
        folder = tmp_path / "run" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        TrainerState(global_step=step, epoch=float(epoch), log_history=list(log)).save_to_json(
            str(folder / "trainer_state.json")
        )
    result = CliRunner().invoke(main, ["show", str(tmp_path / "run"), "--format", "json"])
    assert result.exit_code == 0
    (run,) = json.loads(result.stdout)["runs"]
    assert run["verdict"] == "overfit" and run["flagged"]
    row = next(c for c in run["checkpoints"] if c["step"] == 300)
    assert row["is_best"] and round(row["score"], 6) == 0.329878
    assert run["evidence"]["eval_delta"] == pytest.approx(0.05)
    assert round(run["evidence"]["eval_noise"], 4) == 0.0908
    assert run["evidence"]["eval_samples"] == 400
    table = CliRunner().invoke(main, ["show", str(tmp_path / "run")])
    assert "decision: compare checkpoint-300 with checkpoint-400 " in table.stdout
    assert "checkpoint-400's lower eval loss" in table.stdout
    assert "within the eval noise (2 x 0.0908)" in table.stdout


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("eval_accuracy", "higher"),
        ("eval_mean_token_accuracy", "higher"),
        ("eval_rewards/margins", "higher"),
        ("eval_Exact Match", "higher"),
        ("eval_rouge-L", "higher"),
        ("eval_rougeL", "higher"),
        ("eval_wer", "lower"),
        ("eval_ood_loss", "lower"),
        ("eval_f1_error", "lower"),  # the last token decides first
        ("eval_runtime", None),
        ("eval_samples_per_second", None),
        ("eval_entropy", None),
    ],
)
def test_a_metrics_direction_comes_from_its_name(key, want):
    assert direction(key) == want
    assert evidence.direction(key) == want


def test_the_config_gives_a_direction_or_ignores_a_metric():
    assert evidence.direction("eval_entropy", {"eval_entropy": "lower"}) == "lower"
    assert evidence.direction("eval_accuracy", {"eval_accuracy": "ignore"}) is None
