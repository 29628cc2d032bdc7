"""Parse JSON with orjson when it is installed, and with json for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # optional: the standard library parses the same files, about 3x slower
    orjson = None  # type: ignore[assignment]

# orjson before 3.9.15 crashes the interpreter on deeply nested input instead of refusing it.
if orjson is not None and tuple(int(p) for p in orjson.__version__.split(".")[:2]) < (3, 10):
    orjson = None  # type: ignore[assignment]


def _parse_int(digits: str) -> int | float:
    return int(digits) if len(digits) < 300 else float(digits)


def loads(data: bytes | memoryview | str, exact: bool = False) -> Any:
    """Return the JSON value in `data`; raise json.JSONDecodeError (a ValueError) when invalid,
    UnicodeDecodeError when bytes are not UTF-8.

    Python's json writes NaN and Infinity literals into trainer_state.json when a loss diverges;
    orjson refuses them (and a byte order mark, and lone surrogates), so anything it refuses is
    parsed again by json, which also gives the error message. `exact` parses with json alone:
    orjson reads integers beyond 64 bits as floats, json keeps them whole.
    """
    if orjson is not None and not exact:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    # An integer of thousands of digits is refused by int() and one past 1e308 cannot become a
    # float: read such numbers as floats (inf when out of range), as orjson does, so every value
    # stays usable. Bytes are decoded as UTF-8 here: json.loads would take bytes it cannot read as
    # UTF-8 for UTF-16.
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    return json.loads(text, parse_int=_parse_int)


def dumps_indented(value: Any) -> str:
    """Return `value` as strict JSON indented by two spaces, ASCII only (non-ASCII escaped).

    orjson writes it about ten times faster than json; what it refuses (lone surrogates from
    undecodable file names, non-string keys) or writes as UTF-8 is written by json instead.
    Both write the same values; orjson spells some floats differently (0.00001 for 1e-05).
    """
    if orjson is not None:
        try:
            data = orjson.dumps(value, option=orjson.OPT_INDENT_2)
        except orjson.JSONEncodeError:
            pass
        else:
            if data.isascii():
                return data.decode("ascii")
    return json.dumps(value, indent=2, allow_nan=False)
