"""The canonical trace table every loader and generator produces.

Required: `arrival_s` (float seconds from the first request, sorted), `prompt_tokens` and
`output_tokens` (integers >= 1). Optional columns carry what some traces know: session and
turn, prefix-block hash ids, priority, SLO class, tenant.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from traces.errors import TraceError

REQUIRED_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL_COLUMNS = ("session_id", "turn", "prefix_hashes", "prefix_block_tokens", "priority", "slo_class", "tenant")
INTEGER_COLUMNS = ("prompt_tokens", "output_tokens", "turn", "prefix_block_tokens", "priority")


def validate_trace(table: pd.DataFrame, origin: str, first_line: int = 2) -> pd.DataFrame:
    """Check a canonical table; `first_line` is the file line of row 0 (for error messages).

    Returns the table with canonical dtypes. Raises TraceError naming the first bad row.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise TraceError(
            f"{origin}: missing column(s) {', '.join(missing)}; a trace needs {', '.join(REQUIRED_COLUMNS)}"
        )
    unknown = [c for c in table.columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise TraceError(
            f"{origin}: unknown column(s) {', '.join(map(str, unknown))}; "
            f"optional columns are {', '.join(OPTIONAL_COLUMNS)}"
        )
    if len(table) == 0:
        raise TraceError(f"{origin}: the trace has no requests")
    out = table.copy()
    out["arrival_s"] = _numeric(out, "arrival_s", origin, first_line, minimum=0.0, integer=False)
    for column in INTEGER_COLUMNS:
        if column in out.columns:
            minimum = 1 if column in ("prompt_tokens", "output_tokens", "prefix_block_tokens") else None
            out[column] = _numeric(out, column, origin, first_line, minimum=minimum, integer=True)
    arrivals = out["arrival_s"].to_numpy()
    backwards = np.flatnonzero(np.diff(arrivals) < 0)
    if len(backwards):
        row = int(backwards[0]) + 1
        raise TraceError(
            f"{origin}: row {row + first_line}, column arrival_s: {float(arrivals[row])!r} is earlier than the row before "
            f"({float(arrivals[row - 1])!r}); sort the trace by arrival time"
        )
    return out.reset_index(drop=True)


def _numeric(
    table: pd.DataFrame, column: str, origin: str, first_line: int, minimum: float | None, integer: bool
) -> pd.Series:
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if integer:
        bad |= ~bad & (values.fillna(0) != np.floor(values.fillna(0))).to_numpy()
    if minimum is not None:
        bad |= ~bad & (values.fillna(minimum) < minimum).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise TraceError(
            f"{origin}: row {row + first_line}, column {column}: expected {kind}{bound}, got {raw.iloc[row]!r}"
        )
    return values.astype(np.int64 if integer else np.float64)
