"""The strided price table gives the very prices pricing each stretch afresh gives, whatever the
order its windows grow in, and within its limit."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import ParallelPlan, load_hardware, load_model
from servesim.hwmodels.roofline import RooflineCostModel
from servesim.hwmodels.strided_table import GROWTH_ENTRIES, StridedPriceTable

COST = RooflineCostModel(load_model("llama-2-70b"), load_hardware("a100-80g"), ParallelPlan(tp=2))


def direct(batch_size: int, first: int, count: int) -> np.ndarray:
    positions = np.arange(first, first + batch_size * count, batch_size, dtype=np.float64)
    return COST._decode_positions_seconds(batch_size, positions)


STRETCHES = st.lists(st.tuples(st.integers(1, 64), st.integers(1, 200_000), st.integers(1, 300)),
                     min_size=1, max_size=12)


@settings(max_examples=60)
@given(STRETCHES, st.sampled_from([10_000, 1 << 22]))
def test_prices_equal_pricing_each_stretch_afresh(stretches: list, max_entries: int) -> None:
    table = StridedPriceTable(COST._decode_positions_seconds, max_entries)
    for batch_size, first, count in stretches:
        got = table.strided(batch_size, first, count)
        np.testing.assert_array_equal(got, direct(batch_size, first, count))
        assert table._entries <= max_entries


def test_windows_grow_both_ways_and_stop_at_the_limit() -> None:
    table = StridedPriceTable(COST._decode_positions_seconds, max_entries=3 * GROWTH_ENTRIES)
    table.strided(8, 50_000, 10)
    window = table._windows[8]
    assert window.start == 50_000 and len(window.prices) == GROWTH_ENTRIES
    table.strided(8, 49_000, 10)  # below: grows down by a whole block at least
    assert table._windows[8].start == 50_000 - GROWTH_ENTRIES
    table.strided(8, 60_000, 10)  # past the limit: priced directly, the window unchanged
    assert len(table._windows[8].prices) == 2 * GROWTH_ENTRIES
    np.testing.assert_array_equal(table.strided(8, 60_000, 10), direct(8, 60_000, 10))


def test_a_window_grows_by_its_length_or_just_enough_under_the_limit() -> None:
    table = StridedPriceTable(COST._decode_positions_seconds, max_entries=15_000)
    table.strided(8, 50_000, 10)
    table.strided(8, 49_000, 10)  # [45904, 54096): 8,192 prices
    table.strided(8, 60_000, 10)  # doubling would hold 16,384: only up to its last position, 60,072
    window = table._windows[8]
    assert (window.start, len(window.prices)) == (45_904, 60_073 - 45_904)
    unlimited = StridedPriceTable(COST._decode_positions_seconds)
    unlimited.strided(8, 50_000, 10)
    unlimited.strided(8, 49_000, 10)
    unlimited.strided(8, 60_000, 10)  # grows by its own length, 8,192
    assert len(unlimited._windows[8].prices) == 16_384


def test_a_later_stretch_over_the_same_positions_gets_the_same_prices() -> None:
    contexts = np.arange(1000, 1200, 10)
    cost = RooflineCostModel(load_model("llama-2-70b"), load_hardware("a100-80g"), ParallelPlan(tp=2))
    first = cost.decode_stretch_times(contexts, 40)
    np.testing.assert_array_equal(cost.decode_stretch_times(contexts + 5, 20, 3), first[8:28])
    np.testing.assert_array_equal(cost.decode_stretch_times(contexts + 8, 20), first[8:28])
