"""Reading CSV and JSON Lines files fast, while remembering the file line of every row.

Parsing is done by pandas' and Arrow's C readers. Only when Arrow rejects a JSON Lines file
is it parsed line by line in Python, to name the first bad line or to cope with fields whose
type changes between rows (which the validation then reports precisely).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from traces.errors import Locator, TraceError


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
    nonblank = [bool(line.strip()) for line in data.split(b"\n")]
    return np.flatnonzero(nonblank) + 1


def read_csv_table(path: Path, what: str = "trace file") -> tuple[pd.DataFrame, np.ndarray | None]:
    """All cells as strings, and the file line of each row (None if a quoted cell spans lines)."""
    data = read_bytes(path, what)
    try:
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: the file is empty. A CSV trace starts with a header line.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: not a readable CSV file ({exc}). Fix the line named.") from None
    lines = line_numbers(data)[1:]
    return table, lines if len(lines) == len(table) else None


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
        return Locator(str(self.path), self.lines, None, names or {}, "field")

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

    def _rows(self) -> pd.DataFrame:
        if self.python is None:
            self.python = pd.DataFrame(_parse_lines(self.path, self.data, self.lines))
        return self.python


def read_jsonl(path: Path, what: str = "trace file") -> JsonRecords:
    data = read_bytes(path, what)
    lines = line_numbers(data)
    if len(lines) == 0:
        raise TraceError(f"{path}: the file is empty. A JSON Lines trace has one JSON object per line.")
    try:
        table = pa_json.read_json(pa.BufferReader(data))
    except pa.ArrowInvalid:
        table = None
    if table is None or table.num_rows != len(lines):
        return JsonRecords(path, data, lines, None, pd.DataFrame(_parse_lines(path, data, lines)))
    return JsonRecords(path, data, lines, table)


def _parse_lines(path: Path, data: bytes, lines: np.ndarray) -> list[dict[str, Any]]:
    text_lines = data.split(b"\n")
    rows = []
    for number in lines.tolist():
        try:
            record = json.loads(text_lines[number - 1])
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
