"""Transforms that apply to any canonical trace table."""
from __future__ import annotations

import pandas as pd

from traces.errors import TraceError


def scale_rate(table: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Multiply the arrival rate by `factor` (arrival times are divided by it)."""
    if factor <= 0:
        raise TraceError(f"rate scale factor must be > 0, got {factor!r}")
    out = table.copy()
    out["arrival_s"] = out["arrival_s"] / factor
    return out


def time_window(table: pd.DataFrame, start_s: float, end_s: float | None) -> pd.DataFrame:
    """Keep requests with start_s <= arrival < end_s, shifted so the window starts at 0."""
    if end_s is not None and end_s <= start_s:
        raise TraceError(f"time window end ({end_s}) must be after its start ({start_s})")
    keep = table["arrival_s"] >= start_s
    if end_s is not None:
        keep &= table["arrival_s"] < end_s
    out = table[keep].copy()
    if out.empty:
        raise TraceError(f"no request arrives in the window [{start_s}, {end_s}) s")
    out["arrival_s"] = out["arrival_s"] - start_s
    return out.reset_index(drop=True)


def take(table: pd.DataFrame, max_requests: int) -> pd.DataFrame:
    """The first `max_requests` requests."""
    if max_requests < 1:
        raise TraceError(f"max requests must be >= 1, got {max_requests}")
    return table.head(max_requests).reset_index(drop=True)
