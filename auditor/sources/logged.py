"""Turn metrics logged under a framework's own names into Trainer-style log entries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

#: The train loss key, when the config names none: the first of these a run logs. Per-step
#: values come before Lightning's per-epoch mean (`on_epoch=True` adds `_epoch`).
TRAIN_KEYS = ("loss", "train_loss", "train_loss_step", "train/loss", "train_loss_epoch")
#: Prefixes of evaluation keys as users name them; `val_loss` becomes `eval_loss`,
#: `val/acc` becomes `eval_acc`.
EVAL_PREFIXES = ("eval_", "eval/", "val_", "val/", "valid_", "valid/", "validation_", "validation/")
#: Lightning adds this to a key logged with both on_step and on_epoch.
_EPOCH_SUFFIX = "_epoch"


class KeyMap(NamedTuple):
    """How a run's logged keys become Trainer keys: `train_key` names the train loss (config
    `train_key`; None: the first of TRAIN_KEYS logged). Evaluation keys are renamed by
    EVAL_PREFIXES, so `--eval-key eval_nll` selects a logged `val_nll`."""

    train_key: str | None = None


def eval_name(key: str) -> str | None:
    """Return the Trainer name of an evaluation key (`val_loss` -> `eval_loss`), else None."""
    for prefix in EVAL_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            rest = key[len(prefix) :]
            if rest.endswith(_EPOCH_SUFFIX):
                rest = rest[: -len(_EPOCH_SUFFIX)]
            return "eval_" + rest.replace("/", "_")
    return None


def train_key_of(keys: Iterable[str], wanted: str | None) -> str | None:
    """Return the logged key that holds the train loss: `wanted` when logged, else the first
    of TRAIN_KEYS that is."""
    present = set(keys)
    if wanted is not None:
        return wanted if wanted in present else None
    return next((key for key in TRAIN_KEYS if key in present), None)


def number(value: Any) -> float | None:
    """Return `value` as a float (NaN and infinities kept), None when it is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def to_history(
    rows: Iterable[tuple[int, dict[str, float]]], keys: KeyMap
) -> tuple[list[dict[str, Any]], list[str]]:
    """Return Trainer-style entries for `rows` of (step, {logged key: value}) in log order,
    and warnings: one training log per row with the train key, one evaluation per row with
    evaluation keys (later rows win, as in a resumed Trainer run)."""
    listed = list(rows)
    logged = {key for _, row in listed for key in row}
    train_key = train_key_of(logged, keys.train_key)
    warnings: list[str] = []
    if keys.train_key is not None and train_key is None:
        warnings.append(
            f"train key '{keys.train_key}' (config train_key) is not logged (keys: "
            f"{', '.join(sorted(logged)) or 'none'}): no train loss, so no gap"
        )
    renamed: dict[str, str] = {}
    # Sorted: where two logged keys give one name (val_loss and val/loss), the same one wins
    # on every machine.
    for key in sorted(logged):
        name = eval_name(key) if key != train_key else None
        if name is not None and name not in renamed.values():
            renamed[key] = name
    history: list[dict[str, Any]] = []
    for step, row in listed:
        if train_key is not None and train_key in row:
            history.append({"loss": row[train_key], "step": step})
        evaluation = {renamed[key]: value for key, value in row.items() if key in renamed}
        if evaluation:
            evaluation["step"] = step
            history.append(evaluation)
    return history, warnings
