"""Tell apart the trainings that share one output_dir, by the losses their checkpoints logged."""

from __future__ import annotations

from typing import Any, NamedTuple

from .pair import TRAIN_LOG_KEYS, Digest, is_eval_loss, whole_number

# A checkpoint's own newest losses are compared with a training's history: enough to tell two
# trainings apart, little enough to stay cheap.
LINEAGE_ENTRIES = 4
#: The TrainerState fields that place a checkpoint whose history logged no loss yet.
SETTINGS = ("max_steps", "num_train_epochs", "train_batch_size")
_MISSING = object()

Loss = tuple[int, str, Any]


class Lineage(NamedTuple):
    """What places a checkpoint's trainer_state.json in a training."""

    global_step: int | None
    #: Its newest (step, "loss" or eval-loss key, value as logged), newest first.
    losses: list[Loss]
    #: The values of SETTINGS (None where the file has none).
    settings: tuple[Any, ...]


def newest_losses(history: list[Any]) -> tuple[list[Loss], bool]:
    """Return the newest (step, key, loss) of `history`, newest first, and whether they are as
    many as the lineage check compares (`history` may be only the newest entries of a file)."""
    losses: list[Loss] = []
    for entry in reversed(history):
        if len(losses) >= LINEAGE_ENTRIES:
            break
        if type(entry) is not dict and not isinstance(entry, dict):
            continue
        step = entry.get("step")
        if type(step) is not int:
            step = whole_number(step)
            if step is None:
                continue
        if "loss" in entry:
            losses.append((step, "loss", entry["loss"]))
        if not TRAIN_LOG_KEYS.issuperset(entry):
            for key, value in entry.items():
                if is_eval_loss(key):
                    losses.append((step, key, value))
    return losses, len(losses) >= LINEAGE_ENTRIES


def settings_of(fields: dict[str, Any]) -> tuple[Any, ...]:
    """Return the SETTINGS values of a trainer_state.json's top-level `fields`."""
    return tuple(map(fields.get, SETTINGS))


def belongs(lineage: Lineage, digest: Digest, settings: tuple[Any, ...]) -> bool:
    """Return True when a checkpoint of `lineage` is one of the training whose newest history
    is `digest` and whose settings are `settings`.

    Its losses decide: each must be a value that history logged at that step (a value a later
    entry replaced counts too: a resumed Trainer logs the step again). A resumed training may
    have raised max_steps, so the settings decide only for a checkpoint that logged no loss.
    """
    if lineage.losses:
        return conflict(lineage.losses, digest) is None
    pairs = zip(lineage.settings, settings, strict=False)
    return all(a == b for a, b in pairs if a is not None and b is not None)


def conflict(losses: list[Loss], digest: Digest) -> tuple[int, str] | None:
    """Return the first (step, key) of `losses` that the history of `digest` never logged."""
    train, bad, evals = digest.train, digest.bad_train, digest.evals
    for step, key, value in losses:
        if key == "loss":
            known = bad[step] if step in bad else train.get(step, _MISSING)
        else:
            known = evals.get(key, {}).get(step, _MISSING)
        if known is not _MISSING and _same_value(value, known):
            continue
        if not any(_same_value(value, v) for v in digest.overridden.get((key, step), ())):
            return step, key
    return None


def _same_value(value: Any, other: Any) -> bool:
    if isinstance(value, bool) or isinstance(other, bool):
        return value is other
    # NaN is the only JSON value unequal to itself: two NaNs agree.
    return bool(value == other) or (value != value and other != other)
