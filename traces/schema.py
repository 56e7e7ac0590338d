"""The canonical trace table that every loader and generator produces, and its validation.

Required columns: `arrival_s` (float64 seconds, sorted, the first request at or after 0),
`prompt_tokens` and `output_tokens` (int64 >= 1). Optional columns carry what some traces
know: `session_id` and `turn`, `prefix_hashes` (tuple of int hash ids of the prompt's prefix
blocks) with `prefix_block_tokens` (tokens per block), `priority`, `slo_class`, `tenant`.
Validation happens once, at the boundary, so the engine can trust every table it is given.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import chain
from typing import cast

import numpy as np
import pandas as pd

from servesim.traces.errors import Locator, TraceError

REQUIRED_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL_COLUMNS = (
    "session_id",
    "turn",
    "prefix_hashes",
    "prefix_block_tokens",
    "priority",
    "slo_class",
    "tenant",
)
# column -> smallest allowed value (None: any integer)
INTEGER_COLUMNS: dict[str, int | None] = {
    "prompt_tokens": 1,
    "output_tokens": 1,
    "turn": 0,
    "prefix_block_tokens": 1,
    "priority": None,
}
STRING_COLUMNS = ("session_id", "slo_class", "tenant")
LARGEST_INTEGER = float(2**63 - 1)

FIXES = {  # column -> how to fix a bad value
    "arrival_s": "Arrival times are seconds from the start of the trace, at or after 0.",
    "prompt_tokens": "Token counts are whole numbers of at least 1; correct the value or remove the row.",
    "output_tokens": "Token counts are whole numbers of at least 1; correct the value or remove the row.",
    "prefix_block_tokens": "Give the number of tokens in each prefix block, e.g. 512.",
    "turn": "Turns count the requests of a session from 0.",
}


def validate_trace(table: pd.DataFrame, origin: str, *, source: Locator | None = None) -> pd.DataFrame:
    """Check a canonical table and return it with canonical dtypes, column order and a RangeIndex.

    `origin` names the table in messages (a file path, or e.g. "workload"). Loaders pass
    `source`, which knows each row's line in the file and each column's name there, so that
    errors point at what the user can open and edit; otherwise rows are named by index label.
    Raises TraceError naming the first bad row and column.
    """
    if not isinstance(table, pd.DataFrame):
        raise TraceError(f"{origin}: expected a table (pandas DataFrame), got {type(table).__name__}.")
    where = replace(source or Locator(origin), origin=origin, index=table.index)
    _check_columns(table, where)
    if len(table) == 0:
        raise where.file_error("the trace has no requests", "Give at least one request.")
    arrival_s = numbers(table["arrival_s"], where, "arrival_s", integer=False, minimum=0)
    columns: dict[str, object] = {"arrival_s": arrival_s}
    for name in (*REQUIRED_COLUMNS[1:], *OPTIONAL_COLUMNS):
        if name not in table.columns:
            continue
        if name in INTEGER_COLUMNS:
            columns[name] = numbers(table[name], where, name, integer=True, minimum=INTEGER_COLUMNS[name])
        elif name in STRING_COLUMNS:
            columns[name] = _strings(table[name], where, name)
        else:
            columns[name] = hash_tuples(table[name].tolist(), where, name)
    check_sorted(arrival_s, where)
    return pd.DataFrame(columns)


def validate_lengths(table: pd.DataFrame, where: Locator) -> pd.DataFrame:
    """Check a table of prompt_tokens and output_tokens (a length table, no arrivals)."""
    if len(table) == 0:
        raise where.file_error("the table has no rows", "Give at least one row of lengths.")
    return pd.DataFrame(
        {name: numbers(table[name], where, name, integer=True, minimum=1) for name in REQUIRED_COLUMNS[1:]}
    )


def numbers(
    raw: pd.Series, where: Locator, column: str, *, integer: bool, minimum: float | None, fix: str | None = None
) -> np.ndarray:
    """The column as int64 or float64; the first non-number, non-integer or too-small value is an error.

    The check is vectorised; only the first bad row is looked at, to report it.
    """
    if pd.api.types.is_bool_dtype(raw.dtype):
        values = pd.Series(np.nan, index=raw.index)
    elif pd.api.types.is_numeric_dtype(raw.dtype):
        values = raw
    else:
        values = pd.to_numeric(raw.astype(object), errors="coerce")
    floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(floats)
        if integer:
            bad |= (floats != np.floor(floats)) | (np.abs(floats) > LARGEST_INTEGER)
        if minimum is not None:
            bad |= floats < minimum
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise where.error(
            position,
            column,
            f"expected {kind}{bound}, got {where.shown(raw.iloc[position])}",
            fix or FIXES.get(column, "Correct the value or remove the row."),
        )
    if integer:
        return values.to_numpy().astype(np.int64)
    return floats


def check_sorted(arrivals: np.ndarray, where: Locator) -> None:
    """Arrival times must not go backwards: the engine replays rows in order."""
    backwards = np.flatnonzero(np.diff(arrivals) < 0)
    if len(backwards):
        position = int(backwards[0]) + 1
        raise where.error(
            position,
            "arrival_s",
            f"arrival {float(arrivals[position])!r} s is earlier than the row before "
            f"({float(arrivals[position - 1])!r} s)",
            "Sort the file by arrival time (a stable sort keeps the order of equal times).",
        )


def same_columns(chunks: Iterable[pd.DataFrame], origin: str) -> Iterator[pd.DataFrame]:
    """The chunks of one table, each checked to have the first one's columns."""
    columns: list[str] | None = None
    for table in chunks:
        if columns is not None and list(table.columns) != columns:
            raise TraceError(f"{origin}: a chunk has the columns {list(table.columns)}, the first {columns}")
        columns = list(table.columns)
        yield table


def in_arrival_order(chunks: Iterable[pd.DataFrame], origin: str) -> Iterator[pd.DataFrame]:
    """Validated chunks (each sorted), checked not to go backwards in time from one to the next."""
    previous_s: float | None = None
    for table in chunks:
        first_s = float(table["arrival_s"].iloc[0])
        if previous_s is not None and first_s < previous_s:
            raise TraceError(f"{origin}: arrival {first_s!r} s is earlier than the row before")
        previous_s = float(table["arrival_s"].iloc[-1])
        yield table


def hash_tuples(values: list[object], where: Locator, column: str) -> list[tuple[int, ...]]:
    """Each value as a tuple of int hash ids; anything else (floats, strings, bools) is an error.

    Tables from the loaders already hold tuples of ints: that case is checked in C-speed passes.
    """
    if set(map(type, values)) <= {tuple}:
        tuples = cast(list[tuple[int, ...]], values)  # the ints are checked next
        if set(map(type, chain.from_iterable(tuples))) <= {int}:
            return tuples
    out = []
    for position, value in enumerate(values):
        ids = as_hash_tuple(value)
        if ids is None:
            raise where.error(
                position,
                column,
                f"expected a list of integer block hash ids, got {where.shown(value)}",
                "Give the hash ids of the prompt's prefix blocks as a list of integers "
                "(space-separated integers in a CSV cell).",
            )
        out.append(ids)
    return out


def as_hash_tuple(value: object) -> tuple[int, ...] | None:
    """`value` as a tuple of Python ints, or None if it is not a sequence of integers."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return None
    if all(type(v) is int for v in value):
        return value if isinstance(value, tuple) else tuple(value)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    return None


def _check_columns(table: pd.DataFrame, where: Locator) -> None:
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    unknown = [str(c) for c in table.columns if c not in known]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        shown_missing = ", ".join(where.names.get(c, c) for c in missing)
        misspelt = [(u, close[0]) for u in unknown if (close := difflib.get_close_matches(u, missing, n=1))]
        hint = "".join(f" {where.noun} {u!r} looks like {m!r}: rename it." for u, m in misspelt)
        raise where.file_error(
            f"missing {where.noun}(s) {shown_missing}",
            f"A trace needs {', '.join(REQUIRED_COLUMNS)}; add the missing {where.noun}(s) "
            f"(a CSV's first line is its header).{hint}",
        )
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise where.file_error(
            f"unknown {where.noun}(s) {', '.join(unknown)}",
            f"{hint}Rename or remove it; optional {where.noun}s are {', '.join(OPTIONAL_COLUMNS)}.",
        )


def _strings(raw: pd.Series, where: Locator, column: str) -> pd.Series:
    values = raw.astype(str)
    missing = (raw.isna() | (values.str.strip() == "")).to_numpy()
    if missing.any():
        position = int(np.flatnonzero(missing)[0])
        raise where.error(
            position,
            column,
            f"expected a name, got {where.shown(raw.iloc[position])}",
            f"Give every row a {column} or remove the {where.noun}.",
        )
    return values.reset_index(drop=True)

