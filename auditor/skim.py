"""Read only the two ends of a trainer_state.json: its global_step and its newest log entries."""

from __future__ import annotations

import os
import stat
from typing import Any, NamedTuple

from .fastjson import loads

# The Trainer writes json.dumps(indent=2, sort_keys=True): the short top-level keys that sort
# before log_history (global_step among them) open the file, the few that sort after it close
# it, and every line's indent gives its depth. Anything else is parsed whole instead.
HEAD_BYTES = 4096
TAIL_BYTES = 8192
_OPEN = b'{\n  "'
_HISTORY_OPEN = b'\n  "log_history": ['
_GLOBAL_STEP = b'\n  "global_step": '
_HISTORY_CLOSE = b"\n  ],\n"
_ENTRY_OPEN = b"\n    {\n"
# The TrainerState fields that sort after log_history, in every transformers release so far.
# An unknown one could be a list whose end looks like log_history's, so it means a full parse.
_FIELDS_AFTER_HISTORY = frozenset(
    {
        "logging_steps",
        "max_steps",
        "num_input_tokens_seen",
        "num_train_epochs",
        "save_steps",
        "stateful_callbacks",
        "total_flos",
        "train_batch_size",
        "trial_name",
        "trial_params",
    }
)


class Skim(NamedTuple):
    """What a trainer_state.json's two ends say, without parsing the history between them."""

    #: The global_step value as written (None when the file has none).
    global_step: Any
    #: The newest complete log_history entries, oldest first: a suffix of the history.
    newest_entries: list[Any]


def skim_state(path: str, entries: int = 6) -> Skim | None:
    """Return the global_step and up to `entries` newest log entries of the file at `path`.

    Returns None when the file is not a regular file, cannot be read, is small enough to parse
    whole, or its ends are not laid out as the Trainer writes them: the caller then parses the
    whole file, which also gives the reason when it is broken.
    """
    try:
        # Non-blocking and regular files only: a pipe under this name must not hang the scan.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size <= HEAD_BYTES + TAIL_BYTES:
            return None
        head = os.pread(descriptor, HEAD_BYTES, 0)
        tail = os.pread(descriptor, TAIL_BYTES, info.st_size - TAIL_BYTES)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    try:
        return _skim(head, tail, entries)
    except ValueError:  # a fragment that is not JSON after all (json.JSONDecodeError included)
        return None


def _skim(head: bytes, tail: bytes, entries: int) -> Skim | None:
    if not head.startswith(_OPEN):
        return None
    history_at = head.find(_HISTORY_OPEN)
    if history_at < 0:
        return None
    keys = head[:history_at]
    step_at = keys.find(_GLOBAL_STEP)
    global_step = None
    if step_at >= 0:
        if keys.find(_GLOBAL_STEP, step_at + 1) >= 0:
            return None
        start = step_at + len(_GLOBAL_STEP)
        end = keys.find(b"\n", start)
        value = (keys[start:] if end < 0 else keys[start:end]).rstrip(b",")
        plain = value.isdigit() and (value == b"0" or not value.startswith(b"0"))
        global_step = int(value) if plain else loads(value)

    # Inside log_history every line is indented by four spaces or more. If what follows the
    # last two-space "]," parses as known fields, and what precedes it back to an entry's
    # opening line parses as a list, no top-level key lies between: that "]" closes log_history.
    close_at = tail.rfind(_HISTORY_CLOSE)
    if close_at < 0:
        return None
    first_entry = close_at
    for _ in range(entries):
        found = tail.rfind(_ENTRY_OPEN, 0, first_entry)
        if found < 0:
            break
        first_entry = found
    if first_entry == close_at:
        return None
    # One parse for both: the newest entries, and the fields after log_history.
    newest, closing = loads(
        b"[["
        + tail[first_entry:close_at]
        + b"],{"
        + tail[close_at + len(_HISTORY_CLOSE) - 1 :]
        + b"]"
    )
    if not isinstance(newest, list) or not isinstance(closing, dict) or not closing:
        return None
    if not closing.keys() <= _FIELDS_AFTER_HISTORY:
        return None
    return Skim(global_step, newest)
