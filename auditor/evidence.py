"""The overfit flag of SPEC v2 section 4: the held-out evidence, the rule, and its sentence.

Pure: weighs two checkpoint rows of one run against the run's evaluation curves; the one
place that decides whether shipping a checkpoint instead of the scorer's pick is an overfit
pick, and the one place that says so in words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from statistics import median
from typing import Any

from .config import Config
from .results import CheckpointResult, Evidence, MetricEvidence, RunResult

#: An evaluation curve: step -> finite value, later log entries winning.
Curve = Mapping[int, float]

# Float noise must not decide a flag that the SPEC puts exactly on a threshold.
_EPSILON = 1e-12
# A robust noise estimate needs at least three second differences.
_NOISE_FROM = 5
# MAD -> standard deviation for normal noise, and the variance of a second difference (1+4+1).
_MAD_TO_SIGMA = 1.4826
_SECOND_DIFFERENCE_SCALE = math.sqrt(6)

# The SPEC's word lists, kept as written there so the two can be compared at a glance.
_LOWER_LAST = frozenset("loss wer cer ter error err perplexity ppl mae mse rmse".split())  # noqa: SIM905
_HIGHER_ANY = frozenset(
    """accuracy accuracies acc f1 precision recall auc bleu sacrebleu rouge rouge1 rouge2 rougel
    rougelsum meteor chrf exact matthews mcc pearson pearsonr spearman spearmanr bertscore map
    ndcg mrr iou dice r2 margins""".split()  # noqa: SIM905
)
_TOKEN_SPLIT = re.compile(r"[_/\- ]+")


def eval_curves(entries: Iterable[tuple[int, Mapping[str, Any]]]) -> dict[str, dict[int, float]]:
    """Return every `eval_*` key's curve (step -> finite number) from (step, log entry) pairs
    in log order; a step logged twice keeps its later value."""
    curves: dict[str, dict[int, Any]] = {}
    for step, entry in entries:
        for key, value in entry.items():
            if isinstance(key, str) and key.startswith("eval_"):
                curves.setdefault(key, {})[step] = value
    return {
        key: finite
        for key, curve in curves.items()
        if (finite := {s: float(v) for s, v in curve.items() if _finite(v)})
    }


def noise(curve: Curve) -> float | None:
    """Return the robust noise of a curve (SPEC 4), or None below five values."""
    values = [curve[step] for step in sorted(curve)]
    if len(values) < _NOISE_FROM:
        return None
    second = [values[i - 1] - 2 * values[i] + values[i + 1] for i in range(1, len(values) - 1)]
    centre = median(second)
    return _MAD_TO_SIGMA * median(abs(d - centre) for d in second) / _SECOND_DIFFERENCE_SCALE


def direction(key: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """Return "higher" or "lower" (which is better) for a task metric's log key, or None when
    its name says neither or the config ignores it."""
    chosen = (overrides or {}).get(key)
    if chosen is not None:
        return None if chosen == "ignore" else chosen
    tokens = [t for t in _TOKEN_SPLIT.split(key.removeprefix("eval_").lower()) if t]
    if not tokens:
        return None
    if tokens[-1] in _LOWER_LAST:
        return "lower"
    if any(t in _HIGHER_ANY for t in tokens):
        return "higher"
    return None


def weigh(
    chosen: CheckpointResult,
    scorer: CheckpointResult,
    curves: Mapping[str, Curve],
    eval_key: str,
    config: Config,
) -> Evidence:
    """Return the evidence on shipping `chosen` instead of the scorer's pick, and the outcome
    of the SPEC v2 flag rule (both rows must have a finite eval loss)."""
    assert chosen.eval_loss is not None and scorer.eval_loss is not None
    eval_noise = noise(curves.get(eval_key, {}))
    delta = scorer.eval_loss - chosen.eval_loss
    metrics = (
        tuple(_metrics(chosen.step, scorer.step, curves, eval_key, config))
        if config.task_metrics
        else ()
    )
    margin = (chosen.overfit or 0.0) - (scorer.overfit or 0.0)
    if chosen.step == scorer.step or margin < config.min_gap_delta - _EPSILON:
        outcome = "gap_below_threshold"
    elif (
        config.noise_k is not None
        and eval_noise is not None
        and delta > config.noise_k * eval_noise + _EPSILON
    ):
        outcome = "eval_advantage_beyond_noise"
    elif any(m.favours == "eval_only" for m in metrics):
        outcome = "contradicted_by_metric"
    else:
        outcome = "flagged"
    return Evidence(eval_noise, delta, _samples(curves, eval_key, chosen.step), metrics, outcome)


def _metrics(
    chosen: int, scorer: int, curves: Mapping[str, Curve], eval_key: str, config: Config
) -> Iterable[MetricEvidence]:
    band_k = config.noise_k if config.noise_k is not None else 0.0
    for key in sorted(curves):
        curve = curves[key]
        if key == eval_key or chosen not in curve or scorer not in curve:
            continue
        better = direction(key, config.metrics)
        if better is None:
            continue
        ours, theirs = curve[chosen], curve[scorer]
        sigma = noise(curve)
        band = band_k * sigma if sigma is not None else 0.0
        advantage = ours - theirs if better == "higher" else theirs - ours
        if advantage > band + _EPSILON:
            favours = "eval_only"
        elif -advantage > band + _EPSILON:
            favours = "scorer"
        else:
            favours = "neither"
        yield MetricEvidence(key, better, ours, theirs, sigma, favours)


def _samples(curves: Mapping[str, Curve], eval_key: str, step: int) -> int | None:
    # The Trainer prefixes an eval set's runtime like its loss: eval_<name>_runtime.
    prefix = eval_key.removesuffix("loss")
    runtime = curves.get(prefix + "runtime", {}).get(step)
    per_second = curves.get(prefix + "samples_per_second", {}).get(step)
    if runtime is None or per_second is None:
        return None
    return round(runtime * per_second)


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past 1e308
        return False


def decision(run: RunResult, config: Config) -> str | None:
    """Return the run's decision in the user's terms: which checkpoint to ship and why, when
    its picks differ, then what to make of the Trainer's best when that is judged too; None
    when there is nothing to decide."""
    scorer = run.row(run.scorer_pick)
    if scorer is None:
        return None
    parts = []
    eval_only = run.row(run.eval_only_pick)
    if run.evidence is not None and eval_only is not None:
        parts.append(sentence(run.evidence, eval_only, scorer, config))
    trainer = run.row(run.trainer_best)
    if run.trainer_best_evidence is not None and trainer is not None:
        chosen_on = f" (chosen on {run.trainer_metric})" if run.trainer_metric else ""
        judged = sentence(run.trainer_best_evidence, trainer, scorer, config)
        parts.append(f"the Trainer's best, {_name(trainer)}{chosen_on}: {judged}")
    return "; ".join(parts) or None


def sentence(
    evidence: Evidence, chosen: CheckpointResult, scorer: CheckpointResult, config: Config
) -> str:
    """Return one plain sentence saying which checkpoint to ship and why: `chosen` (the
    eval-only pick, or the checkpoint judged) against the scorer's pick `scorer`."""
    ours, theirs = _name(chosen), _name(scorer)
    mine, other = _ratio(chosen.overfit), _ratio(scorer.overfit)
    delta = evidence.eval_delta
    if evidence.outcome == "flagged":
        if delta < 0:
            why = f"{ours}'s eval loss is higher by {_num(-delta)}"
        elif config.noise_k is None:
            why = f"{ours}'s eval loss is lower by {_num(delta)} (not weighed against noise)"
        elif evidence.eval_noise is None:
            why = (
                f"{ours}'s eval loss is lower by {_num(delta)}, too few evaluations to tell "
                "that from noise"
            )
        else:
            why = (
                f"{ours}'s lower eval loss (-{_num(delta)}) is within the eval noise "
                f"({config.noise_k:g} x {_num(evidence.eval_noise)})"
            )
        if delta < 0:  # the scorer's pick is ahead on eval loss and on overfitting
            return f"ship {theirs}: {why}, and it overfits by {mine} vs {other}"
        # Lower eval loss within the noise is no sign that the scorer's pick is better: on
        # simulated runs, switching to it on this flag raised the regret (docs/selection.md).
        return (
            f"compare {theirs} with {ours} on data you trust before shipping either: {why}, "
            f"and it overfits by {mine} vs {other}"
        )
    if evidence.outcome == "gap_below_threshold":
        lead = f"keep {ours}: {_compared(delta)}"
        if (chosen.overfit or 0.0) <= (scorer.overfit or 0.0):
            return f"{lead}, and it overfits no more than {theirs} ({mine} vs {other})"
        more = (chosen.overfit or 0.0) - (scorer.overfit or 0.0)
        return (
            f"{lead}, and it overfits only {_ratio(more)} more than {theirs} ({mine} vs "
            f"{other}; min_gap_delta {config.min_gap_delta:g})"
        )
    metric = evidence.contradicting_metric
    if evidence.outcome == "eval_advantage_beyond_noise":
        noise_ = evidence.eval_noise or 0.0
        agrees = "" if metric is None else f" and {metric.key} agrees ({_pair(metric)})"
        return (
            f"keep {ours}: its eval loss is lower by {_num(delta)} ({_times(delta, noise_)} the "
            f"eval noise){agrees}; {theirs} overfits less ({other} vs {mine})"
        )
    assert metric is not None
    return (
        f"keep {ours}: {metric.key} rates it better ({_pair(metric)}, beyond its noise "
        f"{_num(metric.noise or 0.0)}); {theirs} overfits less ({other} vs {mine}) but "
        "that does not outweigh the metric"
    )


def _compared(delta: float) -> str:
    if delta > 0:
        return f"its eval loss is lower by {_num(delta)}"
    if delta < 0:
        return f"its eval loss is higher by {_num(-delta)}"
    return "its eval loss is the same"


def _pair(metric: MetricEvidence) -> str:
    # Both values to the same decimals, three significant digits for the larger one.
    largest = max(abs(metric.eval_only), abs(metric.scorer))
    decimals = max(0, 2 - math.floor(math.log10(largest))) if largest > 0 else 3
    return f"{metric.eval_only:.{decimals}f} vs {metric.scorer:.{decimals}f}"


def _name(row: CheckpointResult) -> str:
    return row.checkpoint or f"step {row.step}"


def _num(value: float) -> str:
    return f"{value:.3g}" if value == 0 or abs(value) >= 1e-3 else f"{value:.1e}"


def _ratio(value: float | None) -> str:
    return f"{value or 0.0:.2f}"


def _times(delta: float, noise_: float) -> str:
    if noise_ <= 0:
        return "far beyond"
    times = delta / noise_
    return f"{times:.0f}x" if times >= 10 else f"{times:.1f}x"
