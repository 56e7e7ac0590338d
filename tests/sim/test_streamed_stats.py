"""Statistics read back in blocks equal NumPy's on the whole array, bit for bit."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.sim.reporting import streamed_stats
from servesim.sim.reporting.streamed_stats import (
    ArraySample,
    Expanded,
    expanded_statistics,
    pairwise_sum,
    sample_max,
    select_ranks,
    weighted_inverted_cdf,
    weighted_mean,
)

gap = st.floats(min_value=0.0, max_value=10.0, allow_nan=False, allow_subnormal=False)
samples = st.lists(st.tuples(gap, st.integers(1, 40)), min_size=1, max_size=700)


def _sample(pairs: list[tuple[float, int]]) -> ArraySample:
    values, weights = zip(*pairs, strict=True)
    return ArraySample(np.array(values), np.array(weights, dtype=float))


@settings(max_examples=150)
@given(samples, st.sampled_from([128, 200, 1 << 20]))
def test_weighted_summary_figures_equal_numpy(pairs: list[tuple[float, int]], read_entries: int) -> None:
    sample = _sample(pairs)
    with mock.patch.object(streamed_stats, "READ_ENTRIES", read_entries):
        assert weighted_mean(sample) == np.average(sample.values, weights=sample.weights)
        expected = np.percentile(sample.values, [50, 90, 99], weights=sample.weights, method="inverted_cdf")
        assert weighted_inverted_cdf(sample, [0.5, 0.9, 0.99]) == expected.tolist()
        assert sample_max(sample) == sample.values.max()


@settings(max_examples=150)
@given(samples, st.sampled_from([128, 200, 1 << 20]))
def test_expanded_figures_equal_numpy_on_the_repeated_array(pairs: list[tuple[float, int]], read_entries: int) -> None:
    sample = _sample(pairs)
    flat = np.repeat(sample.values, sample.weights.astype(int))
    with mock.patch.object(streamed_stats, "READ_ENTRIES", read_entries):
        got = expanded_statistics(sample, (50, 90, 99))
    expected = [np.mean(flat), np.median(flat), np.std(flat), *np.percentile(flat, (50, 90, 99))]
    assert got == [float(x) for x in expected]


@settings(max_examples=60)
@given(st.integers(0, 5000), st.sampled_from([128, 136, 1000]), st.integers(0, 2**32 - 1))
def test_pairwise_sum_mirrors_numpy_at_any_length(length: int, read_entries: int, seed: int) -> None:
    values = np.random.default_rng(seed).lognormal(0.0, 3.0, length)
    with mock.patch.object(streamed_stats, "READ_ENTRIES", read_entries):
        assert pairwise_sum(length, lambda start, stop: values[start:stop]) == float(np.sum(values))


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=200),
       st.data())
def test_ranks_of_any_floats_negative_and_zero_included(values: list[float], data: st.DataObject) -> None:
    array = np.array(values) + 0.0
    rank = data.draw(st.integers(0, len(values) - 1))
    assert select_ranks(ArraySample(array), [rank]) == [float(np.sort(array)[rank])]


def test_expanded_reads_any_position_range() -> None:
    sample = ArraySample(np.arange(1.0, 301.0), np.tile([1.0, 3.0, 2.0], 100))
    flat = np.repeat(sample.values, sample.weights.astype(int))
    with mock.patch.object(streamed_stats, "READ_ENTRIES", 7):
        expanded = Expanded(sample)
        for start, stop in [(0, 1), (5, 6), (0, len(flat)), (13, 200), (199, 600), (len(flat) - 1, len(flat))]:
            assert expanded.read(start, stop).tolist() == flat[start:stop].tolist()


@pytest.mark.parametrize("count", [1, 2, 3, 10])
def test_small_samples(count: int) -> None:
    flat = np.arange(count, dtype=float)
    expected = [np.mean(flat), np.median(flat), np.std(flat), *np.percentile(flat, (50, 90, 99))]
    assert expanded_statistics(ArraySample(flat), (50, 90, 99)) == [float(x) for x in expected]
