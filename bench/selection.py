"""Selection benchmark: how often each checkpoint pick is right, on simulated runs whose true
held-out loss is known (the method and the reading are in docs/selection.md).

    python3 bench/selection.py                 # the table of docs/selection.md (a minute or two)
    python3 bench/selection.py --runs 300      # quicker and coarser
    python3 bench/selection.py --json out.json # the figures as JSON too

Each regime is simulated from its own seed (`--seed` and the regime's name), so the table is
the same whatever the number of worker processes (`--jobs`) or the regimes chosen (`--only`).
The picks and both flags come from the auditor itself: `audit_run` on the simulated history, as
the Trainer callback calls it, with the default config (the v2 flag) and with `noise_k: null`,
`task_metrics: false` (the v1, gap-only flag of SPEC section 4); the smoothed minimum from the
auditor's `smoothed_minimum` on the audited checkpoints, at any number of evaluations (the
auditor reports it from 20 on).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor.config import Config
from auditor.picks import audit_run, smoothed_minimum
from auditor.sources import Checkpoint, RunRecord

STEPS_PER_EVAL = 100
#: Relative noise of a logged train loss (a mean over the last logging window).
TRAIN_NOISE = 0.03
RULES = ("eval_only", "scorer", "v1_flag", "v2_flag", "smoothed")
RULE_TITLES = {
    "eval_only": "eval-only",
    "scorer": "scorer",
    "v1_flag": "v1 flag",
    "v2_flag": "v2 flag",
    "smoothed": "smoothed",
}


class Regime(NamedTuple):
    """One setting of the simulation; every run of a regime differs only by its random draws.

    `onset` is the fraction of training after which the true loss rises (None: it keeps
    falling); `strength` is that rise at the end of training, relative to the loss floor;
    `samples` is the eval-set size (None: no eval noise at all); `saved_every` is how many
    evaluations pass between saved checkpoints.
    """

    onset: float | None
    strength: float
    samples: int | None
    evals: int
    saved_every: int

    @property
    def shape(self) -> str:
        """Return the curve's shape in words."""
        if self.onset is None:
            return "falling"
        when = "early" if self.onset < 0.5 else "late"
        how = "strong" if self.strength >= 0.3 else "mild"
        return f"U {when} {how}"

    @property
    def name(self) -> str:
        """Return a short unique name (also the regime's seed)."""
        noise = "n=inf" if self.samples is None else f"n={self.samples}"
        return f"{self.shape}, {noise}, K={self.evals}, save/{self.saved_every}"


# Fixed before any result was looked at (see docs/selection.md): a full grid of five curve
# shapes, three eval-set sizes and four evaluation/saving schedules.
SHAPES = ((None, 0.0), (0.3, 0.1), (0.3, 0.5), (0.7, 0.1), (0.7, 0.5))
SAMPLES = (30, 300, 5000)
SCHEDULES = ((5, 1), (20, 1), (50, 1), (50, 5))
REGIMES = tuple(
    Regime(onset, strength, samples, evals, saved_every)
    for onset, strength in SHAPES
    for samples in SAMPLES
    for evals, saved_every in SCHEDULES
)


class Run(NamedTuple):
    """One simulated run: per evaluation, its true loss, logged eval and train loss, and
    whether a checkpoint was saved there."""

    true_loss: list[float]
    eval_loss: list[float]
    train_loss: list[float]
    saved: list[bool]


def simulate_run(regime: Regime, rng: random.Random, correlation: float = 0.0) -> Run:
    """Return one run of `regime` drawn with `rng`.

    True loss: floor + excess * exp(-rate * t), plus after the onset a quadratic rise reaching
    `strength * floor` at the end (t = i / K). Train loss falls faster than the true loss, more
    so after the onset. Eval loss: true loss plus Gaussian noise of sd true_loss / sqrt(n)
    (a per-sample loss spread equal to its mean, as for exponentially spread losses), with
    `correlation` between the noise of one evaluation and the next (0: independent).
    """
    floor = rng.uniform(0.3, 2.0)
    excess = rng.uniform(0.5, 1.5)
    rate = rng.uniform(2.0, 5.0)
    onset = None if regime.onset is None else regime.onset + rng.uniform(-0.05, 0.05)
    strength = regime.strength * rng.uniform(0.7, 1.3)
    memorise = 0.0 if onset is None else 0.5 + 2.0 * strength
    true_loss, eval_loss, train_loss, saved = [], [], [], []
    shock = 0.0
    fresh = math.sqrt(1.0 - correlation * correlation)
    for i in range(1, regime.evals + 1):
        t = i / regime.evals
        base = floor + excess * math.exp(-rate * t)
        late = 0.0 if onset is None else max(0.0, t - onset) / (1.0 - onset)
        true = base + strength * floor * late * late
        noise = 0.0
        if regime.samples is not None:
            # The first evaluation's noise has the full spread, as every later one does.
            shock = correlation * shock + (fresh if i > 1 else 1.0) * rng.gauss(0.0, 1.0)
            noise = shock * (true / math.sqrt(regime.samples))
        train = base * math.exp(-0.3 * t - memorise * late) * (1.0 + rng.gauss(0.0, TRAIN_NOISE))
        true_loss.append(true)
        eval_loss.append(true + noise)
        train_loss.append(train)
        saved.append(i % regime.saved_every == 0)
    return Run(true_loss, eval_loss, train_loss, saved)


def trainer_record(run: Run) -> RunRecord:
    """Return the run as the auditor reads a Trainer output folder (the Trainer callback's way)."""
    history: list[dict[str, Any]] = []
    for i, (evaluated, trained) in enumerate(
        zip(run.eval_loss, run.train_loss, strict=True), start=1
    ):
        step = i * STEPS_PER_EVAL
        history.append({"loss": trained, "learning_rate": 1e-5, "epoch": float(i), "step": step})
        history.append({"eval_loss": evaluated, "epoch": float(i), "step": step})
    folders = tuple(
        Checkpoint(f"checkpoint-{i * STEPS_PER_EVAL}", i * STEPS_PER_EVAL, True)
        for i, kept in enumerate(run.saved, start=1)
        if kept
    )
    return RunRecord(run_dir="simulated", source="hf_trainer", history=history, checkpoints=folders)


#: The config under which the auditor's flag is the v1, gap-only rule (SPEC section 4).
V1_CONFIG = Config().replace(noise_k=None, task_metrics=False)
V2_CONFIG = Config()


class Picks(NamedTuple):
    """What each rule ships for one run (evaluation indices) and the two flags."""

    chosen: dict[str, int]
    v1_flagged: bool
    v2_flagged: bool


def picks(run: Run) -> Picks:
    """Return every rule's pick for `run`, the auditor deciding picks and flags."""
    record = trainer_record(run)
    v1 = audit_run(record, V1_CONFIG, curves=False)
    v2 = audit_run(record, V2_CONFIG, curves=False)
    assert v1.eval_only_pick is not None and v1.scorer_pick is not None
    eval_only = v1.eval_only_pick.step // STEPS_PER_EVAL - 1
    scorer = v1.scorer_pick.step // STEPS_PER_EVAL - 1
    # The product's rule without its reporting threshold: the benchmark is its evidence at
    # every number of evaluations.
    smoothed = smoothed_minimum(v1.checkpoints)
    assert smoothed is not None
    chosen = {
        "eval_only": eval_only,
        "scorer": scorer,
        "v1_flag": scorer if v1.flagged else eval_only,
        "v2_flag": scorer if v2.flagged else eval_only,
        "smoothed": smoothed[0].step // STEPS_PER_EVAL - 1,
    }
    return Picks(chosen, v1.flagged, v2.flagged)


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def measure(regime: Regime, runs: int, seed: int, correlation: float = 0.0) -> dict[str, Any]:
    """Return the figures of `runs` runs of `regime`: per rule the mean and 90th percentile
    regret, the share of runs where it missed the best saved checkpoint and its paired
    difference to the eval-only pick (mean and standard error); per flag its rate, precision
    and recall."""
    rng = random.Random(f"{seed}/{regime.name}")
    regrets: dict[str, list[float]] = {rule: [] for rule in RULES}
    scorer_better = 0
    flagged = {"v1": 0, "v2": 0}
    hits = {"v1": 0, "v2": 0}
    for _ in range(runs):
        run = simulate_run(regime, rng, correlation)
        chosen = picks(run)
        best = min(t for t, kept in zip(run.true_loss, run.saved, strict=True) if kept)
        for rule, index in chosen.chosen.items():
            regrets[rule].append(run.true_loss[index] - best)
        truly_better = (
            run.true_loss[chosen.chosen["scorer"]] < run.true_loss[chosen.chosen["eval_only"]]
        )
        scorer_better += truly_better
        for flag, raised in (("v1", chosen.v1_flagged), ("v2", chosen.v2_flagged)):
            flagged[flag] += raised
            hits[flag] += raised and truly_better
    baseline = regrets["eval_only"]
    rules = {}
    for rule, values in regrets.items():
        difference = [r - b for r, b in zip(values, baseline, strict=True)]
        rules[rule] = {
            "mean_regret": statistics.fmean(values),
            "p90_regret": _p90(values),
            "missed": sum(v > 0 for v in values) / runs,
            "vs_eval_only": statistics.fmean(difference),
            "vs_eval_only_se": statistics.stdev(difference) / math.sqrt(runs),
        }
    flags = {
        flag: {
            "rate": flagged[flag] / runs,
            "precision": _ratio(hits[flag], flagged[flag]),
            "recall": _ratio(hits[flag], scorer_better),
        }
        for flag in flagged
    }
    return {
        "regime": regime.name,
        "runs": runs,
        "scorer_truly_better": scorer_better / runs,
        "rules": rules,
        "flags": flags,
    }


def verdict(figures: dict[str, Any], rule: str) -> int:
    """Return -1 when `rule` has a lower mean regret than the eval-only pick by more than two
    standard errors of the paired difference, +1 when higher by as much, else 0."""
    entry = figures["rules"][rule]
    margin = 2.0 * entry["vs_eval_only_se"]
    if entry["vs_eval_only"] < -margin:
        return -1
    if entry["vs_eval_only"] > margin:
        return 1
    return 0


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _summary(regimes: list[Regime], results: list[dict[str, Any]]) -> list[str]:
    """Return the Markdown table of each rule's mean regret averaged over groups of regimes,
    with how many regimes of the group it beats the eval-only pick in, ties and loses."""
    groups: dict[str, list[dict[str, Any]]] = {"all": results}
    for label in (
        lambda r: "n=inf" if r.samples is None else f"n={r.samples}",
        lambda r: r.shape,
        lambda r: f"K={r.evals}, save/{r.saved_every}",
    ):
        for regime, figures in zip(regimes, results, strict=True):
            groups.setdefault(label(regime), []).append(figures)
    lines = [
        "| regimes | " + " | ".join(RULE_TITLES[r] for r in RULES) + " |",
        "|---|" + "---:|" * len(RULES),
    ]
    for name, members in groups.items():
        cells = []
        for rule in RULES:
            mean = statistics.fmean(f["rules"][rule]["mean_regret"] for f in members)
            if rule == "eval_only":
                cells.append(f"{mean:.4f}")
                continue
            counts = [sum(verdict(f, rule) == v for f in members) for v in (-1, 0, 1)]
            cells.append(f"{mean:.4f} ({counts[0]}/{counts[1]}/{counts[2]})")
        lines.append(f"| {name} ({len(members)}) | " + " | ".join(cells) + " |")
    return lines


def render(regimes: list[Regime], results: list[dict[str, Any]]) -> str:
    """Return the Markdown tables of docs/selection.md."""
    lines = [
        "Mean regret averaged over groups of regimes (in brackets: regimes where the rule "
        "beats / ties / loses to the eval-only pick):",
        "",
        *_summary(regimes, results),
        "",
    ]
    head = "| regime | " + " | ".join(RULE_TITLES[r] for r in RULES) + " |"
    lines += [
        "Mean / 90th-percentile regret (true loss above the best saved checkpoint):",
        "",
        head,
        "|---|" + "---:|" * len(RULES),
    ]
    for figures in results:
        cells = []
        for rule in RULES:
            entry = figures["rules"][rule]
            mark = {-1: " ▼", 0: "", 1: " ▲"}[verdict(figures, rule)] if rule != "eval_only" else ""
            cells.append(f"{entry['mean_regret']:.4f} / {entry['p90_regret']:.4f}{mark}")
        lines.append(f"| {figures['regime']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "▼ / ▲: lower / higher mean regret than the eval-only pick by more than two standard "
        "errors of the paired difference.",
        "",
        "Flags (rate: share of runs flagged; precision: flagged runs where the scorer's pick is "
        "truly better; recall: runs where it is truly better that were flagged):",
        "",
        "| regime | scorer truly better | v1 rate | v1 precision | v1 recall "
        "| v2 rate | v2 precision | v2 recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for figures in results:
        v1, v2 = figures["flags"]["v1"], figures["flags"]["v2"]
        lines.append(
            f"| {figures['regime']} | {_share(figures['scorer_truly_better'])} | "
            f"{_share(v1['rate'])} | {_share(v1['precision'])} | {_share(v1['recall'])} | "
            f"{_share(v2['rate'])} | {_share(v2['precision'])} | {_share(v2['recall'])} |"
        )
    return "\n".join(lines) + "\n"


def _measure_one(task: tuple[Regime, int, int, float]) -> dict[str, Any]:
    return measure(*task)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per regime (2000)")
    parser.add_argument("--seed", type=int, default=16, help="base seed (16)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument(
        "--only", default="", help="only regimes whose name contains this text (e.g. 'n=30')"
    )
    parser.add_argument(
        "--correlation",
        type=float,
        default=0.0,
        help="correlation of the eval noise between one evaluation and the next (0)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    if not -1.0 < args.correlation < 1.0:
        parser.error("--correlation must lie strictly between -1 and 1")
    regimes = [r for r in REGIMES if args.only in r.name]
    if not regimes:
        parser.error(f"no regime name contains {args.only!r}")
    start = time.perf_counter()
    tasks = [(regime, args.runs, args.seed, args.correlation) for regime in regimes]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(_measure_one, tasks))
    else:
        results = [_measure_one(task) for task in tasks]
    print(render(regimes, results), end="")
    print(
        f"\n{len(regimes)} regimes x {args.runs} runs, seed {args.seed}, eval noise correlation "
        f"{args.correlation:g}; {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )
    if args.json:
        payload = {
            "seed": args.seed,
            "runs": args.runs,
            "correlation": args.correlation,
            "regimes": results,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
