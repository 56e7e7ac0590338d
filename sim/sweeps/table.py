"""The sweep's table: one row per point, the swept keys as columns and the summary flattened.

Columns: `point`, `label`, `status` (`ok` or `failed`), `error`, the swept keys named by their
dotted key (`variant` for a named variant, `seed`), `offered_requests_per_s`, then every number
of `summary.json` under its dotted path (`ttft_s.p99`, `slo.attainment`, ...). A swept value that
is not a plain scalar of one type across points (a mapping, a list, mixed types) is stored as its
JSON text, so any sweep fits a Parquet column.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from servesim.sim.experiment.sweep_points import SweepPoint

IDENTITY_COLUMNS = ("point", "label", "status", "error")
OFFERED_COLUMN = "offered_requests_per_s"


@dataclass(frozen=True)
class PointRow:
    """What the table says of one finished point."""

    point: SweepPoint
    error: str | None
    summary: Mapping[str, Any] | None
    offered_requests_per_s: float


def flatten_summary(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number of a summary by dotted path; strings and flags are left out, a null is NaN."""
    flat: dict[str, float] = {}
    for key, value in summary.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_summary(value, f"{path}."))
        elif value is None:
            flat[path] = math.nan
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[path] = float(value)
    return flat


def sweep_table(rows: Iterable[PointRow], swept: Sequence[str]) -> pd.DataFrame:
    """The table of `rows`, in point order."""
    records = []
    for row in sorted(rows, key=lambda r: r.point.name):
        record: dict[str, Any] = {"point": row.point.name, "label": row.point.label,
                                  "status": "ok" if row.error is None else "failed", "error": row.error}
        record.update({column: row.point.values[column] for column in swept})
        record[OFFERED_COLUMN] = row.offered_requests_per_s
        metrics = flatten_summary(row.summary) if row.summary is not None else {}
        record.update({path: value for path, value in metrics.items() if path not in record})
        records.append(record)
    columns = [*IDENTITY_COLUMNS, *swept, OFFERED_COLUMN]
    table = pd.DataFrame.from_records(records, columns=_ordered_columns(records, columns))
    for column in swept:
        table[column] = _storable(table[column])
    table["error"] = table["error"].astype("string")
    return table


def _ordered_columns(records: list[dict[str, Any]], first: list[str]) -> list[str]:
    columns = dict.fromkeys(first)
    for record in records:
        columns.update(dict.fromkeys(record))
    return list(columns)


def _storable(values: pd.Series) -> pd.Series:
    kinds = {type(v) for v in values}
    if len(kinds) == 1 and kinds <= {int, float, bool, str}:
        return values
    if kinds <= {int, float}:
        return values.astype(float)
    return values.map(lambda v: json.dumps(v, sort_keys=True, default=str))
