"""The canonical table written as CSV, JSON Lines or Parquet: servesim's own trace files."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from servesim.traces.arrival_origin import arrivals_from_start
from servesim.traces.errors import Locator, TraceError
from servesim.traces.readers import JsonRecords, read_bytes, read_csv_table, read_jsonl
from servesim.traces.schema import STRING_COLUMNS, validate_trace

CSV_TEXT_COLUMNS = (*STRING_COLUMNS, "prefix_hashes")
"""Columns of a canonical CSV never parsed as numbers."""


def load_canonical_csv(path: Path, arrival_unit: str | None = None) -> pd.DataFrame:
    """Columns as in schema.py; a `prefix_hashes` cell holds space-separated integers (empty: none).

    Arrivals far from 0 (dates) are shifted to start at 0, as `arrivals_from_start` says.
    """
    table, where = read_csv_table(path, text_columns=CSV_TEXT_COLUMNS)
    return _from_start(canonical_csv_rows(table, path, where), path, arrival_unit)


def canonical_csv_rows(table: pd.DataFrame, path: Path, where: Locator) -> pd.DataFrame:
    """Rows of a canonical CSV as read (whole or a chunk) made into validated canonical rows."""
    if "prefix_hashes" in table.columns:
        table["prefix_hashes"] = _split_ids(table["prefix_hashes"].tolist(), where)
    return validate_trace(table, str(path), source=where)


def load_canonical_jsonl(path: Path, arrival_unit: str | None = None) -> pd.DataFrame:
    """One JSON object per line with the canonical fields; `prefix_hashes` as a list of integers."""
    return _from_start(canonical_jsonl_rows(read_jsonl(path), path), path, arrival_unit)


def canonical_jsonl_rows(records: JsonRecords, path: Path) -> pd.DataFrame:
    """JSON Lines records (the whole file or a chunk of its lines) made into validated canonical rows."""
    table = pd.DataFrame(
        {name: records.tuples(name) if name == "prefix_hashes" else records.column(name) for name in records.fields}
    )
    return validate_trace(table, str(path), source=records.locator())


def load_canonical_parquet(path: Path, arrival_unit: str | None = None) -> pd.DataFrame:
    """The canonical columns as Parquet columns; `prefix_hashes` a list of integers; rows counted from 1."""
    return _from_start(canonical_parquet_rows(parquet_file(path).read(), path, 0), path, arrival_unit)


def parquet_file(path: Path) -> pq.ParquetFile:
    """The file opened as Parquet, or the error naming it (missing, not a file, not Parquet)."""
    data = read_bytes(path)
    try:
        return pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise TraceError(f"{path}: not a readable Parquet file ({exc}). Write the trace with "
                         "pandas.DataFrame.to_parquet or pyarrow, or use format csv or jsonl.") from None


def canonical_parquet_rows(table: pa.Table, path: Path, first_row: int) -> pd.DataFrame:
    """Rows `first_row` on of a Parquet trace (the whole file or a batch) made into validated canonical rows."""
    where = Locator(str(path), np.arange(first_row + 1, first_row + table.num_rows + 1))
    frame = pd.DataFrame({name: table.column(name).to_pandas() for name in table.column_names
                          if name != "prefix_hashes"})
    if "prefix_hashes" in table.column_names:
        frame["prefix_hashes"] = _id_lists(table.column("prefix_hashes").to_pylist(), where)
    return validate_trace(frame, str(path), source=where)


def _id_lists(cells: list[Any], where: Locator) -> list[tuple[int, ...]]:
    out = []
    for position, cell in enumerate(cells):
        ids = () if cell is None else cell
        if not isinstance(ids, list | tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in ids):
            raise where.error(position, "prefix_hashes", f"expected a list of integers, got {where.shown(cell)}",
                              "Store the prefix block hash ids as a list<int64> column.")
        out.append(tuple(ids))
    return out


def _from_start(table: pd.DataFrame, path: Path, unit: str | None) -> pd.DataFrame:
    table["arrival_s"] = arrivals_from_start(table["arrival_s"].to_numpy(), str(path), unit)
    return table


def _split_ids(cells: list[str], where: Locator) -> list[tuple[int, ...]]:
    out = []
    for position, cell in enumerate(cells):
        try:
            out.append(tuple(int(v) for v in cell.split()))
        except ValueError:
            raise where.error(
                position,
                "prefix_hashes",
                f"expected space-separated integers, got {where.shown(cell)}",
                "Write the prefix block hash ids as integers separated by spaces, e.g. 0 17 42.",
            ) from None
    return out
