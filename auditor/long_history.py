"""Parse a large trainer_state.json piece by piece, keeping of each training log only its loss."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .fastjson import loads
from .pair import TRAIN_LOG_KEYS

#: From this size on a state file is parsed in pieces: parsed whole, the parser's own tree and
#: the full entries cost about five times the file.
PIECEWISE_FROM = 32 * 2**20
BLOCK_BYTES = 8 * 2**20
# The Trainer writes json.dumps(indent=2, sort_keys=True): top-level keys are indented by two
# spaces, log entries by four, so an entry's closing line is "    }" and no string can hold
# the newline before it. Any other layout is parsed whole.
_OPEN = b'{\n  "'
_HISTORY_OPEN = b'\n  "log_history": ['
_ENTRY_END = b"\n    },\n"
_HISTORY_CLOSE = b"\n  ]"


def parse_in_pieces(blocks: Iterator[bytes]) -> dict[str, Any] | None:
    """Return the top-level object of the state file whose bytes `blocks` yields from its
    start, its log_history entries made only of training-log keys cut down to loss and step.

    Returns None when the file is not laid out as the Trainer writes it, or a piece is not
    JSON: the caller then parses the whole file, which also names what is wrong.
    """
    buffer = next(blocks, b"")
    if not buffer.startswith(_OPEN):
        return None
    at = buffer.find(_HISTORY_OPEN)
    while at < 0:
        block = next(blocks, b"")
        if not block:
            return None
        buffer += block
        at = buffer.find(_HISTORY_OPEN)
    try:
        document = loads(buffer[:at].rstrip(b",") + b"\n}")
        if not isinstance(document, dict):
            return None
        history: list[Any] = []
        buffer = buffer[at + len(_HISTORY_OPEN) :]
        while True:
            block = next(blocks, b"")
            if not block:
                break
            end = buffer.rfind(_ENTRY_END)
            if end >= 0:
                # Up to the closing brace; the comma after it separates pieces.
                _extend(history, buffer[: end + 6])
                buffer = buffer[end + 7 :]
            buffer += block
        close = buffer.rfind(_HISTORY_CLOSE)
        if close < 0:
            return None
        _extend(history, buffer[:close])
        closing = loads(b"{" + buffer[close + len(_HISTORY_CLOSE) :].lstrip(b","))
    except (ValueError, RecursionError):
        return None
    if not isinstance(closing, dict):
        return None
    document["log_history"] = history
    document.update(closing)
    return document


def _extend(history: list[Any], piece: bytes) -> None:
    """Append the entries of `piece` (whole entries and the commas between them), each
    training log cut down to its loss and step: what pairing and the lineage check read of it;
    the rest (learning rate, grad norm, epoch) is a third of a long history's memory."""
    entries = loads(b"[" + piece + b"]")
    if not isinstance(entries, list):
        raise ValueError("not a list")
    only_log_keys = TRAIN_LOG_KEYS.issuperset
    append = history.append
    for entry in entries:
        if type(entry) is dict and only_log_keys(entry):
            kept = {}
            # Spelled out: a comprehension per entry costs a second on two million entries.
            if "loss" in entry:
                kept["loss"] = entry["loss"]
            if "step" in entry:
                kept["step"] = entry["step"]
            entry = kept
        append(entry)
