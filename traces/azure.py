"""Azure LLM inference traces (AzurePublicDataset, the Splitwise data): CSV of wall-clock requests."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.traces.readers import read_csv_table, require_columns
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
    canonical = pd.DataFrame(
        {
            "arrival_s": (stamps - stamps.min()).dt.total_seconds(),
            "prompt_tokens": table["ContextTokens"],
            "output_tokens": table["GeneratedTokens"],
        }
    )
    return validate_trace(canonical, str(path), source=where)
