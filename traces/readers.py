"""Reading CSV and JSON Lines files fast, while remembering the file line of every row.

Parsing is done by pandas' and Arrow's C readers. Only when Arrow rejects a JSON Lines file
is it parsed line by line in Python, to name the first bad line or to cope with fields whose
type changes between rows (which the validation then reports precisely).
"""
from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from servesim.traces.errors import Locator, TraceError
from servesim.traces.schema import numbers

IS_WHITESPACE = np.zeros(256, dtype=bool)
IS_WHITESPACE[list(b" \t\r\n\f\v")] = True


def read_bytes(path: Path, what: str = "trace file") -> bytes:
    if not path.exists():
        raise TraceError(f"{path}: no such {what}. Check the path (and the current directory for a relative one).")
    if not path.is_file():
        raise TraceError(f"{path}: is not a file. Give the path of the {what} itself.")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the {what} ({exc.strerror}). Check its permissions.") from None


def line_numbers(data: bytes) -> np.ndarray:
    """1-based numbers of the non-blank lines of `data`."""
    return line_spans(data)[0]


def line_spans(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-blank lines of `data`: their 1-based numbers, and the byte offsets where each starts and ends.

    Vectorised, as trace lines can be long: only lines starting with whitespace are inspected.
    """
    if not data:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    chars = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(chars == ord("\n"))
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(chars)]))
    nonblank = ends > starts
    doubtful = nonblank & IS_WHITESPACE[chars[np.minimum(starts, len(chars) - 1)]]
    for line in np.flatnonzero(doubtful).tolist():
        nonblank[line] = not data[starts[line] : ends[line]].isspace()
    lines = np.flatnonzero(nonblank)
    return lines + 1, starts[lines], ends[lines]


def jsonl_blocks(file: BinaryIO, chunk_rows: int) -> Iterator[tuple[int, bytes]]:
    """Runs of `chunk_rows` non-blank lines of a JSON Lines file, each with its byte offset in the file."""
    lines: list[bytes] = []
    rows = 0
    offset = size = 0
    for line in file:
        lines.append(line)
        size += len(line)
        rows += not line.isspace()
        if rows == chunk_rows:
            yield offset, b"".join(lines)
            offset, size, lines, rows = offset + size, 0, [], 0
    if rows:
        yield offset, b"".join(lines)


# pandas 2 (the last for Python 3.10) reads some floats one ulp off unless asked for round-trip
# parsing; pandas 3 reads them exactly by default and deprecates the option.
EXACT_FLOATS: dict[str, Any] = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def read_csv_table(
    path: Path, what: str = "trace file", text_columns: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, Locator]:
    """The table, and a locator naming each row by its file line (by index if a quoted cell spans lines).

    Numeric columns are parsed by pandas' C reader; a column holding anything else (even an
    empty cell) stays text, for the validation to name the bad cell. `text_columns` are never
    parsed as numbers (a session id "007" stays "007").
    """
    data = read_bytes(path, what)
    try:
        table = pd.read_csv(
            io.BytesIO(data), dtype=dict.fromkeys(text_columns, str), keep_default_na=False, encoding="utf-8-sig",
            **EXACT_FLOATS,
        )
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: the file is empty. A CSV trace starts with a header line.") from None
    except pd.errors.ParserError as exc:
        reason = " ".join(str(exc).split())
        raise TraceError(f"{path}: not a readable CSV file ({reason}). Fix the line named.") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (byte {exc.start}). Save the file as UTF-8.") from None
    lines = line_numbers(data)[1:]
    return table, Locator(str(path), lines if len(lines) == len(table) else None, table.index, text=True)


def csv_table_chunks(path: Path, chunk_rows: int, text_columns: tuple[str, ...] = ()
                     ) -> Iterator[tuple[pd.DataFrame, Locator]]:
    """`read_csv_table`'s table `chunk_rows` rows at a time, parsed with its options; rows named by index.

    A file `read_csv_table` refuses raises pandas' own error here (a ValueError or OSError):
    the caller then reads the file whole for the message.
    """
    with pd.read_csv(path, chunksize=chunk_rows, dtype=dict.fromkeys(text_columns, str), keep_default_na=False,
                     encoding="utf-8-sig", **EXACT_FLOATS) as reader:
        for table in reader:
            yield table, Locator(str(path), None, table.index, text=True)


def require_columns(
    present: list[str] | pd.Index, needed: tuple[str, ...], where: Locator, fmt: str, fix: str | None = None
) -> None:
    """A file without the columns its format needs is most likely in another format: say so."""
    missing = [c for c in needed if c not in present]
    if missing:
        raise where.file_error(
            f"missing {where.noun}(s) {', '.join(missing)} (found {', '.join(map(str, present)) or 'none'})",
            fix or f"A {fmt} file has the {where.noun}s {', '.join(needed)}; check that the file and the format match.",
        )


def request_timestamps(records: JsonRecords, names: dict[str, str], fmt: str, fix: str) -> np.ndarray:
    """The `timestamp` field of a JSON Lines request trace (Mooncake's, RAGPulse's) as floats in the
    file's own unit; records without `timestamp`, `input_length` and `output_length` are an error."""
    where = records.locator(names)
    require_columns(records.fields, ("timestamp", "input_length", "output_length"), where, fmt)
    return numbers(records.column("timestamp"), where, "arrival_s", integer=False, minimum=None, fix=fix)


@dataclass
class JsonRecords:
    """The records of a JSON Lines file, one per non-blank line, held by Arrow when it could parse them."""

    path: Path
    data: bytes
    lines: np.ndarray
    arrow: pa.Table | None
    python: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def fields(self) -> list[str]:
        return list(self.arrow.column_names) if self.arrow is not None else list(self._rows().columns)

    def locator(self, names: dict[str, str] | None = None) -> Locator:
        return Locator(str(self.path), self.lines, None, names or {}, noun="field")

    def column(self, name: str) -> pd.Series:
        """A scalar field as a Series; rows without the field hold a missing value."""
        if self.arrow is not None and not _is_nested(self.arrow.schema.field(name).type):
            return self.arrow.column(name).to_pandas()
        return self._rows()[name]

    def values(self, name: str) -> list[Any]:
        """A field's values as Python objects (lists, dicts), exactly as the JSON wrote them.

        Arrow widens integers to floats when a list mixes them; such columns are re-read
        exactly, so that the row holding the float is the one reported.
        """
        if self.arrow is not None and not _has_float(self.arrow.schema.field(name).type):
            return self.arrow.column(name).to_pylist()
        return [None if _missing(v) else v for v in self._rows()[name].tolist()]

    def tuples(self, name: str) -> list[Any]:
        """`values` with JSON lists as tuples (as prefix_hashes holds them); validation checks the rest.

        A column of integer lists without nulls is cut from Arrow's flat buffer: hundreds of
        thousands of hash ids become Python ints in one call.
        """
        arrow = self.arrow
        if (arrow is not None and pa.types.is_list(kind := arrow.schema.field(name).type)
                and pa.types.is_integer(kind.value_type)):
            column = arrow.column(name).combine_chunks()
            if column.null_count == 0 and column.values.null_count == 0:
                flat = column.values.to_numpy(zero_copy_only=False).tolist()
                offsets = column.offsets.to_numpy().tolist()
                return [tuple(flat[start:end]) for start, end in pairwise(offsets)]
        values = self.values(name)
        if set(map(type, values)) <= {list}:
            return list(map(tuple, values))
        return [tuple(v) if type(v) is list else v for v in values]

    def _rows(self) -> pd.DataFrame:
        if self.python is None:
            self.python = pd.DataFrame(_parse_lines(self.path, self.data, self.lines))
        return self.python


def read_jsonl(path: Path, what: str = "trace file") -> JsonRecords:
    return jsonl_records(path, read_bytes(path, what))


def jsonl_records(path: Path, data: bytes) -> JsonRecords:
    """The records of `data`, JSON Lines text from `path` (the whole file or a run of its lines)."""
    lines = line_numbers(data)
    if len(lines) == 0:
        raise TraceError(f"{path}: the file is empty. A JSON Lines trace has one JSON object per line.")
    try:
        table = pa_json.read_json(pa.BufferReader(data))
    except pa.ArrowInvalid:
        table = None
    if table is None or table.num_rows != len(lines) or _may_repeat_keys(table, data):
        return JsonRecords(path, data, lines, None, pd.DataFrame(_parse_lines(path, data, lines)))
    return JsonRecords(path, data, lines, table)


def _parse_lines(path: Path, data: bytes, lines: np.ndarray) -> list[dict[str, Any]]:
    text_lines = data.split(b"\n")
    rows = []
    for number in lines.tolist():
        try:
            record = json.loads(text_lines[number - 1], object_pairs_hook=_unique_keys)
        except _RepeatedKey as exc:
            raise TraceError(
                f"{path}: row {number}: field {exc.args[0]!r} appears twice in one object. "
                "Keep one of them: JSON readers silently keep the last, so the row is ambiguous."
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise TraceError(
                f"{path}: row {number}: not valid JSON ({reason}). Each line must hold one complete JSON object."
            ) from None
        if not isinstance(record, dict):
            raise TraceError(
                f"{path}: row {number}: expected a JSON object, got a {type(record).__name__}. "
                "Each line must hold one JSON object with the request's fields."
            )
        rows.append(record)
    return rows


class _RepeatedKey(ValueError):
    """A JSON object names a key twice (args[0]: the key)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return record


def _may_repeat_keys(table: pa.Table, data: bytes) -> bool:
    """Whether some key may be written twice in one object (Arrow keeps one silently).

    A fast, conservative test: a field named more often in the text than Arrow found values
    for it (an explicit null also counts) sends the file to the exact line-by-line parse.
    """
    columns = list(zip(table.column_names, table.columns, strict=True))
    while columns:
        name, column = columns.pop()
        pattern = b'"' + re.escape(name.encode()) + rb'"\s*:'
        if len(re.findall(pattern, data)) > len(column) - column.null_count:
            return True
        if pa.types.is_struct(column.type):
            columns += [(column.type.field(i).name, child) for i, child in enumerate(column.flatten())]
    return False


def _is_nested(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind)


def _has_float(kind: pa.DataType) -> bool:
    if pa.types.is_floating(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_float(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_has_float(kind.field(i).type) for i in range(kind.num_fields))
    return False


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))

