"""Transforms that apply to any canonical trace table; each returns a new table.

These let one recorded day of traffic answer "what if the load were twice as high" or
"only the busiest ten minutes", without editing the trace file.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import pandas as pd

from servesim.traces.errors import TraceError


def scale_rate(table: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Multiply the arrival rate by `factor`: arrival times (and so all gaps) are divided by it."""
    if not isinstance(factor, Real) or isinstance(factor, bool) or not math.isfinite(factor) or factor <= 0:
        raise TraceError(f"rate scale factor must be a number > 0, got {factor!r}.")
    out = table.copy()
    out["arrival_s"] = out["arrival_s"] / factor
    return out


def time_window(table: pd.DataFrame, start_s: float, end_s: float | None) -> pd.DataFrame:
    """Requests with start_s <= arrival < end_s (end_s None: to the end), with start_s moved to 0.

    The shift is by start_s, not by the first kept arrival, so the idle time between the
    window's start and its first request is kept.
    """
    if not math.isfinite(start_s) or start_s < 0:
        raise TraceError(f"time window start must be a number of seconds >= 0, got {start_s!r}.")
    if end_s is not None and not end_s > start_s:
        raise TraceError(f"time window end ({end_s!r} s) must be after its start ({start_s!r} s).")
    out = window_rows(table, start_s, end_s)
    if out.empty:
        last = float(table["arrival_s"].max()) if len(table) else 0.0
        raise TraceError(
            f"no request arrives in the window [{start_s}, {end_s}) s; the trace's arrivals end at {last:g} s. "
            "Choose a window inside the trace."
        )
    return out.reset_index(drop=True)


def window_rows(table: pd.DataFrame, start_s: float, end_s: float | None) -> pd.DataFrame:
    """The rows of `time_window`, unchecked: it applies row by row, so to a trace's chunks one at a time."""
    keep = table["arrival_s"] >= start_s
    if end_s is not None:
        keep &= table["arrival_s"] < end_s
    out = table[keep].copy()
    out["arrival_s"] = out["arrival_s"] - start_s
    return out


def take(table: pd.DataFrame, max_requests: int) -> pd.DataFrame:
    """The first `max_requests` requests in arrival order (all of them if the trace is shorter)."""
    if not isinstance(max_requests, Integral) or isinstance(max_requests, bool) or max_requests < 1:
        raise TraceError(f"max requests must be a whole number >= 1, got {max_requests!r}.")
    return table.head(int(max_requests)).reset_index(drop=True)
