"""Pair each evaluation's loss with the train loss logged before it (SPEC section 2)."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .scoring import is_finite

DEFAULT_EVAL_KEY = "eval_loss"
# Keys TRL's preference trainers (DPO, ORPO, KTO, CPO, GRPO, ...) log: their "loss" is not
# a language-model cross-entropy, so exp(loss) is no perplexity.
_PREFERENCE_MARKERS = ("rewards/chosen", "logps/chosen", "log_odds_ratio", "kl", "reward")


class Evaluation(NamedTuple):
    """One evaluation of the run, with the train loss paired to it."""

    step: int
    eval_loss: float
    train_loss: float | None
    epochs_without_improvement: int


class History(NamedTuple):
    """What a run's log_history says about its losses, paired and in step order."""

    evaluations: tuple[Evaluation, ...]
    eval_key: str | None
    #: Every loss-like evaluation key the history holds (`eval_loss`, `eval_<name>_loss`).
    eval_keys: tuple[str, ...]
    #: Every logged (step, train loss), later entries winning, for curves.
    train_losses: tuple[tuple[int, float], ...]
    preference_loss: bool
    warnings: tuple[str, ...]


def whole_number(value: Any) -> int | None:
    """Return `value` as an int when it is a whole number (10 or 10.0; not True), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer past 1e308: as unusable as the float 1e400
        return math.inf if value > 0 else -math.inf


def is_eval_loss(key: str) -> bool:
    """Return True for a loss on an eval set: `eval_loss`, or `eval_<name>_loss`."""
    return key.startswith("eval_") and key.endswith("_loss")


def choose_eval_key(
    keys: Iterable[str], wanted: str | None, trainer_key: str | None = None
) -> tuple[str | None, str | None]:
    """Return (eval key, warning) for a history holding the eval-loss keys `keys` (SPEC
    section 2); `trainer_key` is the key the Trainer selected its best checkpoint on, if known."""
    present = set(keys)
    if wanted is not None:
        if wanted in present:
            return wanted, None
        return None, (
            f"eval key '{wanted}' is not in this run's history (it has: "
            f"{', '.join(sorted(present)) or 'no evaluation losses'}); "
            "pass --eval-key with one of those"
        )
    if DEFAULT_EVAL_KEY in present:
        return DEFAULT_EVAL_KEY, None
    if trainer_key in present:
        return trainer_key, None
    named = sorted(k for k in present if k != DEFAULT_EVAL_KEY and is_eval_loss(k))
    if len(named) == 1:
        return named[0], None
    if not named:
        return None, "no evaluation loss in the history: the run was never evaluated on a loss"
    return None, (
        f"several eval sets and no eval_loss ({', '.join(named)}): "
        f"choose one with --eval-key, e.g. --eval-key {named[0]}"
    )


#: The keys of a Trainer's training log: entries made only of these carry no evaluation.
TRAIN_LOG_KEYS = frozenset({"loss", "grad_norm", "learning_rate", "epoch", "step", "total_flos"})


class Digest(NamedTuple):
    """One pass over a log_history: everything pairing, the lineage check and the Trainer's
    metric need, so the history's thousands of entries are walked once."""

    #: step -> train loss (numbers only), later entries winning.
    train: dict[int, float]
    #: step -> a train "loss" that is no number (a string, null...), when no later number came.
    bad_train: dict[int, Any]
    #: eval-loss key -> step -> its value as logged, later entries winning.
    evals: dict[str, dict[int, Any]]
    #: (step, entry) of every entry with an `eval_*` key, in log order.
    eval_entries: tuple[tuple[int, dict[str, Any]], ...]
    #: Every key the history holds.
    keys: frozenset[str]
    skipped_entries: int
    bad_train_values: bool
    #: ("loss" or an eval-loss key, step) -> the values a later entry at that step replaced.
    overridden: dict[tuple[str, int], list[Any]]


def digest_history(log_history: Sequence[Any]) -> Digest:
    """Return the Digest of a log_history; malformed entries are counted, never raised."""
    train: dict[int, float] = {}
    bad: dict[int, Any] = {}
    evals: dict[str, dict[int, Any]] = {}
    eval_entries: list[tuple[int, dict[str, Any]]] = []
    overridden: dict[tuple[str, int], list[Any]] = {}
    # Most entries are training logs made only of these keys: a set comparison in C skips them
    # without looking at each key.
    plain = set(TRAIN_LOG_KEYS)
    only_plain_keys = plain.issuperset
    eval_keys: set[str] = set()
    loss_keys: dict[str, bool] = {}
    skipped = 0
    bad_train = False
    for entry in log_history:
        # The type() checks pass the Trainer's own ints, floats and dicts without a call.
        if type(entry) is not dict and not isinstance(entry, dict):
            skipped += 1
            continue
        step = entry.get("step")
        if type(step) is not int:
            step = whole_number(step)
            if step is None:
                skipped += 1
                continue
        if "loss" in entry:
            raw = entry["loss"]
            loss = raw if type(raw) is float else _number(raw)
            if step in train or (bad and step in bad):
                # A step logged twice (a resumed run): the later entry wins.
                overridden.setdefault(("loss", step), []).append(bad.pop(step, train.get(step)))
            if loss is None:
                bad_train = True
                bad[step] = raw
                train.pop(step, None)
            else:
                train[step] = loss
        if only_plain_keys(entry):
            continue
        has_eval = False
        for key, value in entry.items():
            if key in plain:
                continue
            if not key.startswith("eval_"):
                plain.add(key)
                continue
            has_eval = True
            eval_keys.add(key)
            is_loss = loss_keys.get(key)
            if is_loss is None:
                is_loss = loss_keys[key] = is_eval_loss(key)
            if is_loss:
                logged = evals.setdefault(key, {})
                if step in logged:
                    overridden.setdefault((key, step), []).append(logged[step])
                logged[step] = value
        if has_eval:
            eval_entries.append((step, entry))
    return Digest(
        train=train,
        bad_train=bad,
        evals=evals,
        eval_entries=tuple(eval_entries),
        keys=frozenset(plain | eval_keys),
        skipped_entries=skipped,
        bad_train_values=bad_train,
        overridden=overridden,
    )


def pair_history(
    log_history: Sequence[Any], eval_key: str | None = None, train_loss: str = "last"
) -> History:
    """Return the run's evaluations paired with train losses, per SPEC section 2.

    `eval_key` None picks `eval_loss` or the run's only `eval_<name>_loss`; `train_loss` is
    "last" (the SPEC's pairing) or "mean" (mean train loss since the previous evaluation).
    Malformed entries are skipped and counted in the warnings.
    """
    return pair_digest(digest_history(log_history), eval_key, train_loss)


def pair_digest(
    digest: Digest,
    eval_key: str | None = None,
    train_loss: str = "last",
    curves: bool = True,
    trainer_key: str | None = None,
) -> History:
    """Return the History of an already digested log_history (see `pair_history`); with
    `curves` False, without its `train_losses`. `trainer_key`: see `choose_eval_key`."""
    warnings: list[str] = []
    train = digest.train
    evals_by_key = digest.evals
    bad_values: set[str] = {"loss"} if digest.bad_train_values else set()
    preference = any(key.endswith(_PREFERENCE_MARKERS) for key in digest.keys)
    skipped_entries = digest.skipped_entries
    if skipped_entries:
        warnings.append(
            f"{skipped_entries} log_history entr{'y' if skipped_entries == 1 else 'ies'} "
            "skipped: not an object or without a whole-number 'step'"
        )
    key, key_warning = choose_eval_key(evals_by_key, eval_key, trainer_key)
    if key_warning:
        warnings.append(key_warning)
    train_steps = sorted(train)
    evaluations: list[Evaluation] = []
    if key is not None:
        raw = evals_by_key[key]
        best = math.inf
        since_best = 0
        previous_step: int | None = None
        nonfinite_eval: list[int] = []
        nonfinite_train: list[int] = []
        for step in sorted(raw):
            value = _number(raw[step])
            if value is None:
                bad_values.add(key)
                continue
            if is_finite(value) and value < best:
                best, since_best = value, 0
            else:
                since_best += 1
            if not math.isfinite(value):
                nonfinite_eval.append(step)
            paired = _pair_train(train_steps, train, step, previous_step, train_loss)
            if paired is not None and not math.isfinite(paired):
                nonfinite_train.append(step)
                paired = None
            evaluations.append(Evaluation(step, value, paired, since_best))
            previous_step = step
        if nonfinite_eval:
            warnings.append(
                f"{key} is NaN or infinite at step {_steps(nonfinite_eval)}: "
                "those checkpoints cannot be scored and are never picked"
            )
        if nonfinite_train:
            warnings.append(
                f"train loss is NaN or infinite before step {_steps(nonfinite_train)}: "
                "treated as missing, so the gap term is 0 there"
            )
    if bad_values:
        warnings.append(
            f"non-numeric values ignored for {', '.join(sorted(bad_values))} "
            "(strings, nulls or booleans where the Trainer writes numbers)"
        )
    if preference and key is not None:
        warnings.append(
            "preference-optimisation loss (DPO/ORPO/KTO-style): the score is kept for "
            "comparability, but its perplexity term means nothing for this loss"
        )
    return History(
        evaluations=tuple(evaluations),
        eval_key=key,
        eval_keys=tuple(sorted(evals_by_key)),
        train_losses=tuple(sorted(train.items())) if curves else (),
        preference_loss=preference,
        warnings=tuple(warnings),
    )


def _pair_train(
    steps: list[int], train: dict[int, float], step: int, previous: int | None, how: str
) -> float | None:
    """Return the train loss paired with the evaluation at `step`; `steps` are `train`'s
    steps in order (looked up only around the evaluations: a sweep's report needs no more)."""
    end = bisect_right(steps, step)
    if end == 0:
        return None
    if how == "mean" and previous is not None:
        start = bisect_right(steps, previous)
        window = [v for v in map(train.__getitem__, steps[start:end]) if math.isfinite(v)]
        if window:
            return sum(window) / len(window)
    return train[steps[end - 1]]


def _steps(steps: list[int], most: int = 6) -> str:
    shown = ", ".join(str(s) for s in steps[:most])
    return shown + (f" and {len(steps) - most} more" if len(steps) > most else "")
