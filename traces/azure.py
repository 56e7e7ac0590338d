"""Azure LLM inference traces (AzurePublicDataset, the Splitwise data): CSV of wall-clock requests."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.traces.errors import Locator
from servesim.traces.readers import csv_table_chunks, read_csv_table, require_columns
from servesim.traces.schema import validate_trace

# canonical column -> column in the published file
AZURE_NAMES = {"arrival_s": "TIMESTAMP", "prompt_tokens": "ContextTokens", "output_tokens": "GeneratedTokens"}


def load_azure(path: Path) -> pd.DataFrame:
    """The 2023 files (and the 2024 week-long ones, which share the columns) as a canonical table.

    TIMESTAMP is a wall-clock time without time zone and with 7 fractional digits
    (`2023-11-16 18:15:46.6805900`); a UTC offset is accepted too. Arrivals become seconds
    after the earliest request. The published files are sorted, so an unsorted one is an error.
    """
    table, where = read_csv_table(path)
    where = replace(where, names=AZURE_NAMES)
    stamps = _stamps(table, where)
    return _canonical(table, stamps, stamps.min(), path, where)


def azure_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """`load_azure`'s rows, `chunk_rows` at a time, validated (rows named by index).

    Arrivals count from the first chunk's earliest request: in a sorted file (any other is an
    error) that is the file's earliest, so every row gets the seconds `load_azure` gives it.
    """
    start: pd.Timestamp | None = None
    for table, where in csv_table_chunks(path, chunk_rows):
        where = replace(where, names=AZURE_NAMES)
        stamps = _stamps(table, where)
        start = stamps.min() if start is None else start
        yield _canonical(table, stamps, start, path, where)


def _canonical(table: pd.DataFrame, stamps: pd.Series, start: pd.Timestamp, path: Path, where: Locator
               ) -> pd.DataFrame:
    """Rows of the published columns (the whole file or a chunk), arriving `start` on, validated."""
    canonical = pd.DataFrame(
        {
            "arrival_s": (stamps - start).dt.total_seconds(),
            "prompt_tokens": table["ContextTokens"],
            "output_tokens": table["GeneratedTokens"],
        }
    )
    return validate_trace(canonical, str(path), source=where)


def _stamps(table: pd.DataFrame, where: Locator) -> pd.Series:
    """The TIMESTAMP column as UTC times; a file without the published columns, or a bad time, is an error."""
    require_columns(table.columns, tuple(AZURE_NAMES.values()), where, "Azure LLM inference trace")
    stamps = pd.to_datetime(table["TIMESTAMP"], format="ISO8601", errors="coerce", utc=True)
    bad = stamps.isna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise where.error(
            position,
            "arrival_s",
            f"expected a date and time, got {where.shown(table['TIMESTAMP'].iloc[position])}",
            "Write it as in the published trace, e.g. 2023-11-16 18:15:46.6805900.",
        )
    return stamps
