"""Exact statistics of a sample too large to hold in memory, read back in blocks.

A sample here is a sequence of values with integer weights (a value observed `weight` times),
readable by position range. The results equal NumPy's on the whole array, bit for bit:

- sums follow NumPy's pairwise summation: its split points depend only on the length, so the
  tree is walked in Python down to ranges small enough to read, and each range is summed by
  NumPy itself (a range's pairwise sum is the subtree's value);
- order statistics come from a radix selection over the values' bit patterns (four passes of
  16 bits, counting weights per digit), so they are values of the sample, found exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np

READ_ENTRIES = 1 << 18
"""Entries read back at a time (2 MiB of float64; a pass holds a few arrays of this size)."""
_NUMPY_PAIRWISE_BLOCK = 128
"""NumPy sums up to this many values in one unrolled loop, never split."""
_DIGIT_BITS = 16
_SIGN = np.uint64(1 << 63)


class Sample(Protocol):
    """Values with weights, read by position: entry i is `values[i]` observed `weights[i]` times."""

    @property
    def num_entries(self) -> int: ...

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Values and weights (float64) of entries `start` to `stop` (at most READ_ENTRIES of them)."""
        ...


def blocks(sample: Sample) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, sample.num_entries, READ_ENTRIES):
        yield sample.read(start, min(start + READ_ENTRIES, sample.num_entries))


def pairwise_sum(length: int, read: Callable[[int, int], np.ndarray]) -> float:
    """`np.sum` of a float64 array of `length` whose range [start, stop) `read` returns.

    Mirrors NumPy's pairwise summation: above its block size a range splits at half its length
    rounded down to a multiple of 8; a range that fits in memory is summed by NumPy in one call.
    """
    return float(_pairwise(0, length, read, max(READ_ENTRIES, _NUMPY_PAIRWISE_BLOCK))) if length else 0.0


def _pairwise(start: int, length: int, read: Callable[[int, int], np.ndarray], leaf: int) -> np.float64:
    if length <= leaf:
        return np.float64(np.add.reduce(read(start, start + length)))
    half = length // 2
    half -= half % 8
    return _pairwise(start, half, read, leaf) + _pairwise(start + half, length - half, read, leaf)


def weighted_mean(sample: Sample) -> float:
    """`np.average(values, weights=weights)` of the whole sample."""
    total = float(sum(float(weights.sum()) for _, weights in blocks(sample)))
    products = pairwise_sum(sample.num_entries, lambda start, stop: np.multiply(*sample.read(start, stop)))
    return float(np.float64(products) / np.float64(total))


def total_weight(sample: Sample) -> int:
    """How many observations the sample holds (integer weights: the float sums are exact)."""
    return int(sum(float(weights.sum()) for _, weights in blocks(sample)))


def sample_max(sample: Sample) -> float:
    return max(float(values.max()) for values, _ in blocks(sample))


def select_ranks(sample: Sample, ranks: Sequence[int]) -> list[float]:
    """The values at 0-based positions `ranks` of the sorted sample, each value repeated weight times."""
    prefixes = [0] * len(ranks)
    remaining = [int(r) for r in ranks]
    for shift in range(64 - _DIGIT_BITS, -1, -_DIGIT_BITS):
        counts = [np.zeros(1 << _DIGIT_BITS) for _ in ranks]
        for values, weights in blocks(sample):
            keys = _sortable_bits(values)
            digits = (keys >> np.uint64(shift)) & np.uint64((1 << _DIGIT_BITS) - 1)
            above = keys >> np.uint64(shift + _DIGIT_BITS) if shift + _DIGIT_BITS < 64 else None
            for j, prefix in enumerate(prefixes):
                chosen = slice(None) if above is None else above == np.uint64(prefix)
                counts[j] += np.bincount(digits[chosen].astype(np.intp), weights=weights[chosen],
                                         minlength=1 << _DIGIT_BITS)
        for j, digit_counts in enumerate(counts):
            cumulative = np.cumsum(digit_counts)
            digit = int(np.searchsorted(cumulative, remaining[j], side="right"))
            remaining[j] -= int(cumulative[digit - 1]) if digit else 0
            prefixes[j] = (prefixes[j] << _DIGIT_BITS) | digit
    return [_value_of(prefix) for prefix in prefixes]


def _sortable_bits(values: np.ndarray) -> np.ndarray:
    """Unsigned keys in the order of the floats (sign flipped for positives, all bits for negatives)."""
    bits = (np.asarray(values, dtype=np.float64) + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    negative = (bits & _SIGN) != 0
    return np.where(negative, ~bits, bits | _SIGN)


def _value_of(key: int) -> float:
    bits = np.uint64(key)
    raw = bits & ~_SIGN if bits & _SIGN else ~bits
    return float(np.array([raw], dtype=np.uint64).view(np.float64)[0])


def weighted_inverted_cdf(sample: Sample, quantiles: Sequence[float]) -> list[float]:
    """`np.percentile(values, 100 * q, weights=weights, method="inverted_cdf")` for each q.

    NumPy takes the first entry whose cumulative weight divided by the total reaches q; with
    integer weights that is the observation at rank K - 1, K the least count with K / total >= q.
    """
    total = total_weight(sample)
    return select_ranks(sample, [_least_count(q, total) - 1 for q in quantiles])


def _least_count(q: float, total: int) -> int:
    count = min(max(math.ceil(q * total), 1), total)
    while count > 1 and (count - 1) / total >= q:
        count -= 1
    while count < total and count / total < q:
        count += 1
    return count


def expanded_statistics(sample: Sample, percentiles: Sequence[float]) -> list[float]:
    """mean, median, population std and linear `percentiles` of the sample with each value
    repeated weight times, as `np.mean`, `np.median`, `np.std` and `np.percentile` compute them."""
    expanded = Expanded(sample)
    n = expanded.length
    total = pairwise_sum(n, expanded.read)
    mean = np.float64(total) / np.float64(n)
    squares = pairwise_sum(n, lambda start, stop: np.square(expanded.read(start, stop) - mean))
    std = float(np.sqrt(np.float64(squares) / np.float64(n)))
    half = n // 2
    quantiles = np.true_divide(np.asarray(percentiles, dtype=np.float64), 100)
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual).astype(np.int64)
    previous = np.where(virtual >= n - 1, n - 1, previous)
    following = np.where(virtual >= n - 1, n - 1, previous + 1)
    needed = sorted({half - 1 if n % 2 == 0 else half, half, *previous.tolist(), *following.tolist()})
    value = dict(zip(needed, select_ranks(sample, needed), strict=True))
    median = (value[half - 1] + value[half]) / 2 if n % 2 == 0 else value[half]
    gamma = virtual - previous
    pairs = zip(previous.tolist(), following.tolist(), gamma, strict=True)
    lerped = [_lerp(value[below], value[above], weight) for below, above, weight in pairs]
    return [float(mean), float(median), std, *lerped]


def _lerp(a: float, b: float, t: np.float64) -> float:
    """NumPy's `_lerp`: from below for t < 0.5, from above otherwise (monotone, exact at the ends)."""
    low, high = np.float64(a), np.float64(b)
    diff = high - low
    return float(high - diff * (1 - t) if t >= 0.5 else low + diff * t)


class Expanded:
    """The sample as the flat array `np.repeat(values, weights)`, read by position range.

    Positions map to entries through the cumulative weight at the start of every block of
    READ_ENTRIES entries (one number per block, so the index stays small)."""

    def __init__(self, sample: Sample) -> None:
        self._sample = sample
        starts = [0]
        for _, weights in blocks(sample):
            starts.append(starts[-1] + int(weights.sum()))
        self._block_starts = np.asarray(starts, dtype=np.int64)
        self.length = int(starts[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Positions [start, stop): only the entries that cover them are repeated."""
        parts = []
        block = int(np.searchsorted(self._block_starts, start, side="right")) - 1
        while block < len(self._block_starts) - 1 and self._block_starts[block] < stop:
            entry = block * READ_ENTRIES
            values, weights = self._sample.read(entry, min(entry + READ_ENTRIES, self._sample.num_entries))
            counts = weights.astype(np.int64)
            ends = self._block_starts[block] + np.cumsum(counts)
            first = int(np.searchsorted(ends, start, side="right"))
            last = min(int(np.searchsorted(ends, stop, side="left")) + 1, len(ends))
            repeated = np.repeat(values[first:last], counts[first:last])
            at = int(ends[first] - counts[first])
            parts.append(repeated[max(start - at, 0): stop - at])
            block += 1
        return np.concatenate(parts) if parts else np.empty(0)


class ArraySample:
    """A sample already in memory (tests, small runs)."""

    def __init__(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        self.weights = np.ones(len(self.values)) if weights is None else np.asarray(weights, dtype=np.float64)

    @property
    def num_entries(self) -> int:
        return len(self.values)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.values[start:stop], self.weights[start:stop]
