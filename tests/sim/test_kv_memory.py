import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from servesim.policies.views import blocks_for
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.errors import EngineInvariantError


def test_blocks_for_rounds_up():
    assert [blocks_for(n, 16) for n in (0, 1, 16, 17, 32)] == [0, 1, 1, 2, 2]


def test_allocate_and_release_return_every_block():
    pool = BlockPool(8, 16)
    pool.allocate(1, 3)
    pool.allocate(2, 5)
    assert pool.num_free_blocks == 0
    assert sorted(pool.blocks_of(1) + pool.blocks_of(2)) == list(range(8))
    assert pool.release(1) == 3
    assert pool.num_free_blocks == 3
    pool.check_conservation()


def test_over_allocation_is_an_invariant_error_naming_the_owner():
    pool = BlockPool(2, 16)
    with pytest.raises(EngineInvariantError, match="owner 7 asked for 3 blocks with 2 free"):
        pool.allocate(7, 3)


def test_freed_blocks_are_reused_most_recent_first():
    pool = BlockPool(4, 16)
    pool.allocate(1, 2)
    first = pool.blocks_of(1)
    pool.release(1)
    pool.allocate(2, 2)
    assert pool.blocks_of(2) == first


class BlockPoolMachine(RuleBasedStateMachine):
    """The pool against a model: a dict of how many blocks each owner holds."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = BlockPool(24, 16)
        self.held: dict[int, int] = {}

    @rule(owner=st.integers(0, 5), count=st.integers(0, 8))
    def allocate(self, owner: int, count: int) -> None:
        if count > self.pool.num_free_blocks:
            with pytest.raises(EngineInvariantError):
                self.pool.allocate(owner, count)
            return
        self.pool.allocate(owner, count)
        if count:
            self.held[owner] = self.held.get(owner, 0) + count

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        owner = data.draw(st.sampled_from(sorted(self.held)))
        assert self.pool.release(owner) == self.held.pop(owner)

    @rule(owner=st.integers(100, 105))
    def release_unknown(self, owner: int) -> None:
        assert self.pool.release(owner) == 0

    @invariant()
    def conserved(self) -> None:
        self.pool.check_conservation()
        assert self.pool.num_used_blocks == sum(self.held.values())
        assert 0 <= self.pool.num_free_blocks <= self.pool.num_blocks
        for owner, count in self.held.items():
            assert len(self.pool.blocks_of(owner)) == count


TestBlockPoolMachine = BlockPoolMachine.TestCase
