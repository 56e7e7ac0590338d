"""Shortcuts on the engine step's hot path give what the general path gives."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from servesim.hwmodels import ConstantCostModel
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.overheads import EngineOverheadCostModel


@given(st.lists(st.integers(1, 3), min_size=1, max_size=8))
def test_one_block_at_a_time_takes_the_blocks_a_single_allocation_takes(counts):
    one_by_one, at_once = BlockPool(24, 16), BlockPool(24, 16)
    for owner, count in enumerate(counts):
        for _ in range(count):
            one_by_one.allocate(owner, 1)
        at_once.allocate(owner, count)
    assert all(one_by_one.blocks_of(owner) == at_once.blocks_of(owner) for owner in range(len(counts)))
    assert one_by_one.num_free_blocks == at_once.num_free_blocks
    one_by_one.check_conservation()


@given(st.lists(st.integers(1, 600), min_size=1, max_size=20),
       st.lists(st.integers(1, 512), max_size=6, unique=True))
def test_padded_sizes_are_the_next_captured_size_whatever_was_asked_before(sizes, captured):
    model = EngineOverheadCostModel(ConstantCostModel(0.01), capture_sizes=tuple(captured))
    for size in sizes:
        expected = min((c for c in captured if c >= size), default=size)
        assert model.padded_size(size) == expected
