"""Read only the two ends of a trainer_state.json: its global_step and its newest log entries."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..fastjson import loads

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


class Ends(NamedTuple):
    """The two ends of a trainer_state.json, checked to be laid out as the Trainer writes it;
    its newest log entries are kept as text until someone needs them parsed."""

    #: The global_step value as written (None when written as null).
    global_step: Any
    #: The newest whole log_history entries as written, up to the line closing the last one.
    newest_text: bytes
    #: The top-level fields written after log_history (max_steps, train_batch_size, ...).
    closing: dict[str, Any]


def end_ranges(size: int | None) -> tuple[tuple[int, int | None], ...]:
    """Return the byte ranges ([start, end)) to read of a file of `size` bytes: its head and
    its tail, or the whole file when that is hardly more. Of a file whose size is not known (a
    local one: asking costs a call), the head and the last HEAD_BYTES + TAIL_BYTES bytes (a
    negative start): a shorter reply is the whole file."""
    if size is None:
        return ((0, HEAD_BYTES), (-(HEAD_BYTES + TAIL_BYTES), None))
    if size <= HEAD_BYTES + TAIL_BYTES:
        return ((0, size),)
    return ((0, HEAD_BYTES), (size - TAIL_BYTES, size))


def ends_from(parts: list[bytes], size: int | None) -> tuple[bytes | None, Ends | None]:
    """Return the whole file when the replies to `end_ranges(size)` hold all of it, and its
    Ends (None when they cannot tell: parse the file whole)."""
    whole = parts[0] if len(parts) == 1 else None
    if size is None and len(parts[-1]) < HEAD_BYTES + TAIL_BYTES:
        whole = parts[-1]
    if whole is not None:
        return whole, ends_of(whole, whole)
    # The same tail whether the size was known or not: the same decisions everywhere.
    return None, ends_of(parts[0], parts[-1][-TAIL_BYTES:])


def ends_of(head: bytes, tail: bytes, entries: int = 6) -> Ends | None:
    """Return the Ends of a file from its `head` and `tail` bytes (the replies to `end_ranges`,
    or a whole file as both), with up to `entries` newest log entries.

    Returns None when the file is empty or its ends are not laid out as the Trainer writes
    them: the caller then parses the whole file, which also gives the reason when it is broken.
    """
    if not head:
        return None
    try:
        return _ends(head[:HEAD_BYTES], tail, entries)
    except ValueError:  # a fragment that is not JSON after all (json.JSONDecodeError included)
        return None


def parse_entries(ends: Ends) -> list[Any] | None:
    """Return the newest log entries of `ends` parsed, or None when they are not JSON."""
    # Steps beyond 64 bits (a file whose global_step is one) would be rounded by orjson.
    exact = isinstance(ends.global_step, int) and abs(ends.global_step) >= 2**63
    try:
        newest = loads(b"[" + ends.newest_text + b"]", exact=exact)
    except ValueError:
        return None
    return newest if isinstance(newest, list) else None


def _ends(head: bytes, tail: bytes, entries: int) -> Ends | None:
    if not head.startswith(_OPEN):
        return None
    history_at = head.find(_HISTORY_OPEN)
    if history_at < 0:
        return None
    # Every TrainerState has a global_step: a file without one (or with two) is parsed whole.
    step_at = head.find(_GLOBAL_STEP, 0, history_at)
    if step_at < 0 or head.find(_GLOBAL_STEP, step_at + 1, history_at) >= 0:
        return None
    start = step_at + len(_GLOBAL_STEP)
    end = head.find(b"\n", start, history_at)
    value = head[start : end if end >= 0 else history_at].rstrip(b",")
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
    closing = loads(b"{" + tail[close_at + len(_HISTORY_CLOSE) - 1 :])
    if not isinstance(closing, dict) or not closing or not closing.keys() <= _FIELDS_AFTER_HISTORY:
        return None
    return Ends(global_step, tail[first_entry:close_at], closing)
