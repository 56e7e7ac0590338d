"""Strict JSON for every file servesim writes: NaN and infinities become null.

Python's `json` writes NaN and Infinity by default, which is not JSON: `jq`, JavaScript and most
other readers reject the whole file. A figure with no value (a percentile of no requests, a rate
over no time) is null instead, and `allow_nan=False` makes any value missed here an error.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def finite_or_none(data: Any) -> Any:
    """`data` with every non-finite float, however deeply nested, replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


def json_text(data: Any) -> str:
    """`data` as indented strict JSON text, ending with a newline."""
    return json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n"
