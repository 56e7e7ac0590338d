"""The canonical table written as CSV or JSON Lines: servesim's own trace files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from servesim.traces.arrival_origin import arrivals_from_start
from servesim.traces.errors import Locator
from servesim.traces.readers import JsonRecords, read_csv_table, read_jsonl
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
