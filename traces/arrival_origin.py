"""Arrival times written as dates (epoch seconds, milliseconds, ...) made into seconds from 0.

A canonical trace's `arrival_s` is seconds from the start of the trace. Files exported from
logs often hold absolute times instead: epoch seconds (1.7e9), milliseconds (1.7e12) or
microseconds (1.7e15). Replayed as written, such a trace idles for decades of simulated time
before its first request. Its magnitude tells the unit apart (each reading must fall between
the years 2000 and 2100); the times are then shifted to start at 0, with a note. A start far
from 0 that is no such date is refused: only the user knows what it means.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from servesim.traces.errors import TraceError

UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
EPOCH_2000_S, EPOCH_2100_S = 946_684_800.0, 4_102_444_800.0
FAR_FROM_ZERO_S = 1e7  # about 116 days: later than any real trace's first arrival after its start


class ArrivalShiftWarning(UserWarning):
    """A trace's arrival times were converted and shifted to start at 0."""


def arrivals_from_start(arrivals: np.ndarray, origin: str, unit: str | None = None) -> np.ndarray:
    """`arrivals` (sorted, >= 0) as seconds from the trace's start; see the module docstring.

    `unit` declares what the numbers are (s, ms, us, ns); without it, a start far from 0 is
    read as a date in whichever unit makes the whole trace fall in 2000-2100.
    """
    return arrival_origin(float(arrivals[0]), float(arrivals[-1]), origin, unit).apply(arrivals)


@dataclass(frozen=True)
class ArrivalOrigin:
    """How a trace's arrivals become seconds from its start: multiplied by `factor`, less `shift_s`.

    Decided once from the first and last arrival, then applied to the arrivals chunk by chunk
    with the same element-wise operations as to the whole column, so the results are identical.
    """

    factor: float | None = None
    shift_s: float | None = None

    def apply(self, arrivals: np.ndarray) -> np.ndarray:
        seconds = arrivals if self.factor is None else arrivals * self.factor
        return seconds if self.shift_s is None else seconds - self.shift_s


def arrival_origin(first: float, last: float, origin: str, unit: str | None = None) -> ArrivalOrigin:
    """The conversion of `arrivals_from_start` for a trace whose arrivals run from `first` to `last`."""
    if unit is not None and unit not in UNIT_SECONDS:
        raise TraceError(f"{origin}: arrival_unit must be one of {', '.join(UNIT_SECONDS)}, got {unit!r}.")
    if unit is not None:
        what = f"arrival_s in {UNIT_NAMES[unit]} (as declared) starts at {first:.10g}, far from 0"
    elif first < FAR_FROM_ZERO_S:
        return ArrivalOrigin()
    else:
        unit = _epoch_unit(first, last, origin)
        what = f"arrival_s holds {UNIT_NAMES[unit]} since 1970 (the first is {first:.10g})"
    factor = UNIT_SECONDS[unit]
    first_s = float(np.float64(first) * factor)
    if first_s < FAR_FROM_ZERO_S:
        return ArrivalOrigin(factor)
    warnings.warn(
        f"{origin}: {what}; arrivals were shifted to start at 0{'' if unit == 's' else ' and converted to seconds'}",
        ArrivalShiftWarning,
        stacklevel=3,
    )
    return ArrivalOrigin(factor, first_s)


def _epoch_unit(first: float, last: float, origin: str) -> str:
    for unit, factor in UNIT_SECONDS.items():
        if EPOCH_2000_S <= first * factor and last * factor <= EPOCH_2100_S:
            return unit
    raise TraceError(
        f"{origin}: arrival_s starts at {first:.10g}, far from 0, and is no date between 2000 and 2100 in seconds, "
        "milliseconds, microseconds or nanoseconds since 1970. Write arrival times as seconds from the start of the "
        "trace, or declare their unit with workload.trace.arrival_unit (s, ms, us or ns) to have them shifted to 0."
    )
