"""Read TensorBoard event files (TFRecord framing, Event protobufs) with the standard library."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from functools import cache
from typing import NamedTuple

from ..errors import StateFileError

_TORN_FIX = "the writer was stopped mid-record; the records before it are used"


@cache
def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


def crc32c(data: bytes) -> int:
    """Return the CRC-32C (Castagnoli) of `data`, the checksum TFRecord frames carry."""
    crc = 0xFFFFFFFF
    table = _crc32c_table()
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class Scalar(NamedTuple):
    """One logged number: its tag, step, value and the wall time of its event."""

    tag: str
    step: int
    value: float
    wall_time: float


class Text(NamedTuple):
    """One text summary (TensorBoard's text plugin): its tag, step and text."""

    tag: str
    step: int
    text: str


class EventFile(NamedTuple):
    """What one event file holds, in record order; `warnings` say what was skipped."""

    path: str
    first_wall_time: float
    scalars: tuple[Scalar, ...]
    texts: tuple[Text, ...]
    warnings: tuple[str, ...]


def records(data: bytes, path: str, warnings: list[str]) -> Iterator[bytes]:
    """Yield the payload of each TFRecord frame of `data` (the bytes of `path`).

    A torn last frame (the writer stopped mid-write) ends the file with a warning; a frame
    whose checksum is wrong anywhere else means the file is damaged: StateFileError.
    """
    at, end = 0, len(data)
    while at < end:
        if end - at < 12:
            warnings.append(f"{path}: the last record is torn ({end - at} bytes); {_TORN_FIX}")
            return
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[at + 8 : at + 12])
        if _masked(crc32c(header)) != length_crc:
            raise StateFileError(
                path,
                f"is not a TensorBoard event file, or is damaged at byte {at} (a record's "
                "length fails its checksum); restore the file or delete it",
            )
        start = at + 12
        stop = start + length
        if stop + 4 > end:
            warnings.append(
                f"{path}: the last record is torn ({end - at} of {length + 16} bytes); {_TORN_FIX}"
            )
            return
        payload = data[start:stop]
        (payload_crc,) = struct.unpack("<I", data[stop : stop + 4])
        if _masked(crc32c(payload)) != payload_crc:
            if stop + 4 == end:
                warnings.append(f"{path}: the last record fails its checksum; {_TORN_FIX}")
                return
            raise StateFileError(
                path,
                f"is damaged at byte {start} (a record fails its checksum); restore the file "
                "or delete it",
            )
        yield payload
        at = stop + 4


class _Malformed(ValueError):
    """A protobuf message does not decode."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise _Malformed("varint runs past the message")
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, at
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) of a protobuf message: an int for varints
    (wire 0), the raw 8 or 4 bytes for fixed64/fixed32 (wire 1, 5), bytes for wire 2."""
    at, end = 0, len(data)
    while at < end:
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, wire, value
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if at + size > end:
                raise _Malformed("fixed field runs past the message")
            yield number, wire, data[at : at + size]
            at += size
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > end:
                raise _Malformed("length-delimited field runs past the message")
            yield number, wire, data[at : at + size]
            at += size
        else:
            raise _Malformed(f"wire type {wire} is not used by event files")


# Event: wall_time = 1 (double), step = 2 (int64), summary = 5. Summary: value = 1 (repeated).
# Summary.Value: tag = 1, simple_value = 2 (float), tensor = 8, metadata = 9.
# SummaryMetadata: plugin_data = 1 (plugin_name = 1). TensorProto: dtype = 1, tensor_content =
# 4, float_val = 5, double_val = 6, string_val = 8.
_DT_FLOAT, _DT_DOUBLE, _DT_STRING = 1, 2, 7


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor_value(tensor: bytes) -> float | str | None:
    dtype = 0
    floats: list[float] = []
    strings: list[bytes] = []
    content = b""
    for number, _, value in fields(tensor):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 4 and isinstance(value, bytes):
            content = value
        elif number == 5 and isinstance(value, bytes):
            # packed floats (wire 2) or one float (wire 5)
            floats.extend(struct.unpack(f"<{len(value) // 4}f", value[: len(value) // 4 * 4]))
        elif number == 6 and isinstance(value, bytes):
            floats.extend(struct.unpack(f"<{len(value) // 8}d", value[: len(value) // 8 * 8]))
        elif number == 8 and isinstance(value, bytes):
            strings.append(value)
    if dtype == _DT_STRING and strings:
        return strings[0].decode("utf-8", "replace")
    if not floats and content:
        if dtype == _DT_FLOAT and len(content) == 4:
            floats = list(struct.unpack("<f", content))
        elif dtype == _DT_DOUBLE and len(content) == 8:
            floats = list(struct.unpack("<d", content))
    if dtype in (_DT_FLOAT, _DT_DOUBLE) and len(floats) == 1:
        return floats[0]
    return None


def _plugin(metadata: bytes) -> str:
    for number, _, value in fields(metadata):
        if number == 1 and isinstance(value, bytes):
            for inner, _, name in fields(value):
                if inner == 1 and isinstance(name, bytes):
                    return name.decode("utf-8", "replace")
    return ""


def _event(payload: bytes, scalars: list[Scalar], texts: list[Text]) -> float | None:
    """Add the scalars and texts of one Event to the lists; return its wall time."""
    wall_time: float | None = None
    step = 0
    summaries: list[bytes] = []
    for number, wire, value in fields(payload):
        if number == 1 and wire == 1 and isinstance(value, bytes):
            (wall_time,) = struct.unpack("<d", value)
        elif number == 2 and isinstance(value, int):
            step = _signed(value)
        elif number == 5 and isinstance(value, bytes):
            summaries.append(value)
    for summary in summaries:
        for number, _, value in fields(summary):
            if number != 1 or not isinstance(value, bytes):
                continue
            tag = ""
            simple: float | None = None
            tensor: bytes | None = None
            plugin = ""
            for inner, wire, item in fields(value):
                if inner == 1 and isinstance(item, bytes):
                    tag = item.decode("utf-8", "replace")
                elif inner == 2 and wire == 5 and isinstance(item, bytes):
                    (simple,) = struct.unpack("<f", item)
                elif inner == 8 and isinstance(item, bytes):
                    tensor = item
                elif inner == 9 and isinstance(item, bytes):
                    plugin = _plugin(item)
            if simple is not None:
                scalars.append(Scalar(tag, step, simple, wall_time or 0.0))
            elif tensor is not None:
                found = _tensor_value(tensor)
                if isinstance(found, str):
                    if plugin in ("text", ""):
                        texts.append(Text(tag, step, found))
                elif found is not None and plugin in ("scalars", ""):
                    scalars.append(Scalar(tag, step, found, wall_time or 0.0))
    return wall_time


def parse_event_file(data: bytes, path: str) -> EventFile:
    """Return the scalars and texts of the event file `data` (the bytes of `path`).

    Raises StateFileError when the file is damaged before its last record.
    """
    warnings: list[str] = []
    scalars: list[Scalar] = []
    texts: list[Text] = []
    first = math.inf
    for index, payload in enumerate(records(data, path, warnings)):
        try:
            wall_time = _event(payload, scalars, texts)
        except (_Malformed, struct.error) as exc:
            raise StateFileError(
                path,
                f"record {index} is not a TensorBoard event ({exc}); restore the file or delete it",
            ) from exc
        if wall_time is not None and index == 0:
            first = wall_time
    return EventFile(path, first, tuple(scalars), tuple(texts), tuple(warnings))
