"""Interpolation over a profiled grid: piecewise-linear in log(time) over log(1 + size).

Kernel times grow roughly as a power of their sizes, so straight lines in log-log space fit
between grid points far better than in linear space; `log1p` keeps a size of 0 (no prior
context) on the axis. Linear pieces never overshoot their end points, so the interpolant is
exact at grid points and monotone wherever the grid data are.

Outside the grid the nearest grid value is scaled by the roofline ratio
`roofline(x) / roofline(edge)`: the grid's level, the roofline's trend. Callers pass the
roofline as a function and learn whether any point fell outside.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Roofline1D = Callable[[np.ndarray], np.ndarray]
Roofline2D = Callable[[float, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Curve:
    """One profiled axis: sizes (sorted, distinct) and their times, interpolated in log-log."""

    sizes: np.ndarray
    times: np.ndarray
    # log1p(sizes) and log(times), derived once in __post_init__ for the hot path.
    _u: np.ndarray = field(init=False, repr=False, compare=False)
    _v: np.ndarray = field(init=False, repr=False, compare=False)

    @classmethod
    def from_points(cls, sizes: np.ndarray, times: np.ndarray) -> Curve:
        """A curve through the median time at each distinct size (repeated rows are merged)."""
        sizes, times = np.asarray(sizes, dtype=np.float64), np.asarray(times, dtype=np.float64)
        unique, inverse = np.unique(sizes, return_inverse=True)
        medians = np.array([np.median(times[inverse == i]) for i in range(unique.size)])
        return cls(unique, medians)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_u", np.log1p(self.sizes))
        object.__setattr__(self, "_v", np.log(self.times))

    @property
    def lo(self) -> float:
        return float(self.sizes[0])

    @property
    def hi(self) -> float:
        return float(self.sizes[-1])

    def inside(self, x: np.ndarray) -> np.ndarray:
        """Interpolated times at sizes within [lo, hi] (callers clip first)."""
        return np.exp(np.interp(np.log1p(x), self._u, self._v))

    def evaluate(self, x: float | np.ndarray, roofline: Roofline1D) -> tuple[np.ndarray, bool]:
        """Times at `x`, scaled from the edge by the roofline outside; and whether any point was."""
        x = np.asarray(x, dtype=np.float64)
        clipped = np.clip(x, self.lo, self.hi)
        times = self.inside(clipped)
        outside = clipped != x
        if outside.any():
            times = np.where(outside, times * _ratio(roofline(x), roofline(clipped)), times)
        return times, bool(outside.any())


@dataclass(frozen=True)
class Surface:
    """A 2-D grid as one curve per first-axis value (rows may cover different ranges)."""

    rows_at: np.ndarray
    rows: tuple[Curve, ...]
    # `_blend(x)` by first-axis value, filled by `inside_scalar`.
    _blends: dict[float, tuple[Curve, Curve, float] | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_blends", {})

    @classmethod
    def from_points(cls, xs: np.ndarray, ys: np.ndarray, times: np.ndarray) -> Surface:
        xs, ys, times = (np.asarray(a, dtype=np.float64) for a in (xs, ys, times))
        at = np.unique(xs)
        return cls(at, tuple(Curve.from_points(ys[xs == x], times[xs == x]) for x in at))

    @property
    def x_range(self) -> tuple[float, float]:
        return float(self.rows_at[0]), float(self.rows_at[-1])

    @property
    def y_range(self) -> tuple[float, float]:
        return min(r.lo for r in self.rows), max(r.hi for r in self.rows)

    def y_range_at(self, x: float) -> tuple[float, float] | None:
        """The second axis's measured span at first-axis value `x` (rows differ); None beyond the rows."""
        blend = self._blend(x)
        if blend is None:
            return None
        lower, upper, _ = blend
        return max(lower.lo, upper.lo), min(lower.hi, upper.hi)

    def evaluate(self, x: float, y: np.ndarray, roofline: Roofline2D) -> tuple[np.ndarray, bool]:
        """Times at (x, each y): the two neighbouring rows blended in log-log, roofline-scaled outside."""
        y = np.asarray(y, dtype=np.float64)
        at = self.rows_at
        xc = float(min(max(x, at[0]), at[-1]))
        i = int(np.searchsorted(at, xc, side="right")) - 1
        i = min(i, at.size - 2) if at.size > 1 else 0
        lower, outside = self._row(i, y, roofline)
        if at.size > 1 and xc != at[i]:
            upper, outside_upper = self._row(i + 1, y, roofline)
            w = (np.log1p(xc) - np.log1p(at[i])) / (np.log1p(at[i + 1]) - np.log1p(at[i]))
            lower = np.exp((1.0 - w) * np.log(lower) + w * np.log(upper))
            outside = outside or outside_upper
        if xc != x:
            lower = lower * _ratio(roofline(x, y), roofline(xc, y))
            outside = True
        return lower, outside

    def outside(self, x: float, y: np.ndarray) -> np.ndarray:
        """Per y, whether (x, y) lies outside the grid (what `evaluate` scales by the roofline)."""
        y = np.asarray(y, dtype=np.float64)
        blend = self._blend(x)
        if blend is None:
            return np.ones(y.shape, dtype=bool)
        lower, upper, _ = blend
        return (y < max(lower.lo, upper.lo)) | (y > min(lower.hi, upper.hi))

    def inside_scalar(self, x: float, y: float) -> float | None:
        """The time at one point strictly inside the grid, fast (the hot path); None outside.

        The same arithmetic as `evaluate`, without array set-up: the rows and weight for `x` are
        cached, since a run asks about few distinct first-axis values.
        """
        blend = self._blends.get(x)
        if blend is None:
            blend = self._blends[x] = self._blend(x)
        if blend is None:
            return None
        lower, upper, w = blend
        if not (lower.lo <= y <= lower.hi and upper.lo <= y <= upper.hi):
            return None
        u = math.log1p(y)
        v = float(np.interp(u, lower._u, lower._v))
        if w:
            v = (1.0 - w) * v + w * float(np.interp(u, upper._u, upper._v))
        return math.exp(v)

    def _blend(self, x: float) -> tuple[Curve, Curve, float] | None:
        at = self.rows_at
        if not at[0] <= x <= at[-1]:
            return None
        i = min(int(np.searchsorted(at, x, side="right")) - 1, max(at.size - 2, 0))
        if x == at[i] or at.size == 1:
            return self.rows[i], self.rows[i], 0.0
        w = (math.log1p(x) - math.log1p(at[i])) / (math.log1p(at[i + 1]) - math.log1p(at[i]))
        return self.rows[i], self.rows[i + 1], w

    def _row(self, i: int, y: np.ndarray, roofline: Roofline2D) -> tuple[np.ndarray, bool]:
        x = float(self.rows_at[i])
        return self.rows[i].evaluate(y, lambda ys: roofline(x, ys))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 1 where the roofline gives no time at the edge."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    return np.divide(numerator, denominator, out=np.ones_like(numerator), where=denominator > 0)
