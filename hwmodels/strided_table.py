"""Prices of a function of (batch size, KV positions) kept by position, read as strided slices.

A decode stretch of B requests reads `first`, `first + B`, `first + 2B`, ... KV positions at its
successive iterations, and its attention time is a function of B and those positions alone.
Pricing each stretch afresh costs a score of numpy calls on a short array (the fixed cost of a
call dominates); here each batch size keeps the prices of a window of positions, grown as
stretches reach past it, and a stretch's prices are one strided slice of it. The prices are the
very numbers pricing the stretch would give (numpy's elementwise results do not depend on an
element's place in the array), so a table changes no result. A table's window covers the
positions asked for so far, not all from 0; once the tables together hold `max_entries`
prices, what lies outside them is priced directly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

GROWTH_ENTRIES = 4096
"""Positions priced at least each time a window grows (so that it grows rarely); a window grows by
its own length when that is more."""
MAX_ENTRIES = 1 << 22
"""Prices kept in all windows together: 32 MiB."""


@dataclass(slots=True)
class _Window:
    start: int
    prices: np.ndarray
    """Prices of positions `start`, `start + 1`, ..."""


class StridedPriceTable:
    """`price(batch_size, positions)` kept by position for each batch size (see the module)."""

    def __init__(self, price: Callable[[int, np.ndarray], np.ndarray], max_entries: int = MAX_ENTRIES) -> None:
        self._price = price
        self._windows: dict[int, _Window] = {}
        self._max_entries = max_entries
        self._entries = 0

    def strided(self, batch_size: int, first: int, count: int) -> np.ndarray:
        """Prices at positions `first + k * batch_size` for k in 0 .. count - 1."""
        last = first + batch_size * (count - 1)
        window = self._windows.get(batch_size)
        if window is None or first < window.start or last >= window.start + len(window.prices):
            window = self._widen(batch_size, window, first, last)
            if window is None:
                positions = np.arange(first, last + 1, batch_size, dtype=np.float64)
                return self._price(batch_size, positions)
        offset = first - window.start
        return window.prices[offset:offset + last - first + 1:batch_size]

    def _widen(self, batch_size: int, window: _Window | None, first: int, last: int) -> _Window | None:
        """The window of `batch_size` grown to cover `first` .. `last`, by its own length at least
        (so that a window drifting with the contexts is copied a logarithmic number of times);
        just to `first` .. `last` where that would pass the limit; None where even that would."""
        if window is None:
            old, old_start, old_end = 0, first, first
        else:
            old, old_start = len(window.prices), window.start
            old_end = old_start + old
        step = max(GROWTH_ENTRIES, old)
        start = max(0, min(first, old_start - step)) if first < old_start else old_start
        end = max(last + 1, old_end + step) if last >= old_end else old_end
        if self._entries + (end - start) - old > self._max_entries:
            start, end = min(first, old_start), max(last + 1, old_end)
            if self._entries + (end - start) - old > self._max_entries:
                return None
        below = self._price(batch_size, np.arange(start, old_start, dtype=np.float64))
        above = self._price(batch_size, np.arange(old_end, end, dtype=np.float64))
        prices = np.concatenate((below, window.prices, above)) if window is not None else above
        self._entries += len(prices) - old
        widened = _Window(start, prices)
        self._windows[batch_size] = widened
        return widened
