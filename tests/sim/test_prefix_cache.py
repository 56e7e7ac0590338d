"""The prefix-caching block pool: sharing, registration, eviction order, and conservation."""
from dataclasses import dataclass

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from servesim.policies import create_policy
from servesim.sim.engine.prefix_cache import PrefixCachingBlockPool, num_keyed_blocks
from servesim.sim.errors import EngineInvariantError

BLOCK = 4


@dataclass
class Prompt:
    """The attributes of a request that the pool reads."""

    request_id: int
    prompt_tokens: int
    prefix_hashes: tuple[int, ...]
    prefix_block_tokens: int = BLOCK
    prefix_keys: list[int] | None = None

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens


@dataclass
class Decoding(Prompt):
    """A request that has generated tokens past its prompt."""

    generated: int = 0

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens + self.generated


def pool(num_blocks: int, eviction: str = "lru", clock=lambda: 0.0) -> PrefixCachingBlockPool:
    return PrefixCachingBlockPool(num_blocks, BLOCK, create_policy("eviction", eviction, {}), clock)


def serve(kv: PrefixCachingBlockPool, request: Prompt) -> int:
    """Admit as the engine does: reuse the hit, allocate the rest, register the full blocks."""
    hit = kv.reuse(request)
    kv.allocate(request.request_id, -(-request.prompt_tokens // BLOCK) - hit.num_blocks)
    kv.register(request, 0, request.prompt_tokens // BLOCK)
    return hit.num_tokens


def test_only_blocks_with_a_known_identity_are_keyed():
    assert num_keyed_blocks(Prompt(0, 10, (1, 2, 3)), BLOCK) == 2  # the third block is partial
    assert num_keyed_blocks(Prompt(0, 40, (1, 2)), BLOCK) == 2  # hashes cover 8 tokens only
    assert num_keyed_blocks(Prompt(0, 40, ()), BLOCK) == 0


def test_a_shared_prefix_is_held_once_and_freed_by_its_last_user():
    kv = pool(8)
    assert serve(kv, Prompt(0, 12, (1, 2, 3))) == 0
    assert serve(kv, Prompt(1, 12, (1, 2, 4))) == 8  # two blocks reused, the third differs
    assert kv.num_used_blocks == 4
    assert kv.num_exclusive_blocks(Prompt(1, 12, ())) == 1
    kv.release(0)
    assert kv.num_used_blocks == 3  # the shared blocks stay with request 1
    kv.release(1)
    assert kv.num_used_blocks == 0 and kv.num_cached_free_blocks == 4
    kv.check_conservation()


def test_unreferenced_cached_blocks_count_as_free_and_are_evicted_when_needed():
    kv = pool(4)
    serve(kv, Prompt(0, 16, (1, 2, 3, 4)))
    kv.release(0)
    assert kv.num_free_blocks == 4
    kv.allocate(9, 3)
    assert kv.cached_prefix(Prompt(1, 16, (1, 2, 3, 4))).num_blocks == 1  # the head survived, LRU took the tail
    with pytest.raises(EngineInvariantError):
        kv.allocate(9, 2)


def test_lfu_keeps_the_block_reused_most_often_where_lru_keeps_the_newest():
    def run(eviction: str) -> tuple[int, int]:
        now = [0.0]
        kv = pool(4, eviction, clock=lambda: now[0])
        for request_id in range(3):  # block (7,) is cached by the first and reused by the next two
            serve(kv, Prompt(request_id, 5, (7,)))
            kv.release(request_id)
        now[0] = 1.0
        serve(kv, Prompt(10, 5, (8,)))
        kv.release(10)  # more recent, never reused
        kv.allocate(99, 3)  # two blank blocks and one cached one
        return (kv.cached_prefix(Prompt(11, 5, (7,))).num_blocks, kv.cached_prefix(Prompt(12, 5, (8,))).num_blocks)

    assert run("lfu") == (1, 0)
    assert run("lru") == (0, 1)


def test_a_preempted_request_finds_its_own_generated_blocks_and_computes_the_rest():
    kv = pool(8)
    request = Decoding(0, 8, (1, 2), generated=9)  # 17 tokens: the prompt's 2 keyed blocks, then its own
    serve(kv, request)
    kv.allocate(0, 3)  # 5 blocks for 17 tokens, 16 of them computed
    kv.keep_for_recompute(request, 16)
    kv.release(0)
    assert kv.num_cached_free_blocks == 4  # the fifth block was partial: blank again
    hit = kv.cached_prefix(request)
    assert (hit.num_tokens, hit.num_blocks, hit.num_reclaimed) == (16, 4, 4)  # only the 17th token is computed
    # Generated tokens belong to their request: another one with the same prompt hits the prompt only.
    assert kv.cached_prefix(Decoding(1, 8, (1, 2), generated=9)).num_blocks == 2
    kv.check_conservation()


def test_a_readmission_stops_at_the_first_evicted_block_and_never_caches_the_last_token():
    kv = pool(8)
    request = Decoding(0, 8, (1, 2), generated=8)  # 16 tokens, 15 computed: 3 full blocks
    serve(kv, request)
    kv.allocate(0, 2)
    kv.keep_for_recompute(request, 15)
    kv.release(0)
    assert kv.num_cached_free_blocks == 3
    request.generated = 9  # even with 4 full blocks of tokens, the hit leaves one to compute
    assert kv.cached_prefix(request).num_tokens == 12
    kv.allocate(9, 6)  # 5 blank blocks and the least recently used deepest cached one: block 2
    assert kv.cached_prefix(request).num_tokens == 8
    kv.release(9)
    assert kv.reuse(request).num_tokens == 8
    kv.check_conservation()


class SharingPoolMachine(RuleBasedStateMachine):
    """Requests of a few prefix groups come and go; the pool must conserve every block."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = pool(24)
        self.held: dict[int, int] = {}
        self.requests: dict[int, Prompt] = {}
        self.preempted: list[Prompt] = []
        self.next_id = 0

    @rule(group=st.integers(0, 3), length=st.integers(2, 30), known=st.integers(0, 8))
    def admit(self, group: int, length: int, known: int) -> None:
        request = Prompt(self.next_id, length, tuple(100 * group + k for k in range(known)))
        hit = self.kv.cached_prefix(request)
        need = -(-length // BLOCK) - hit.num_blocks + hit.num_reclaimed
        if need > self.kv.num_free_blocks:
            return
        self.next_id += 1
        serve(self.kv, request)
        self.held[request.request_id] = -(-length // BLOCK)
        self.requests[request.request_id] = request

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        owner = data.draw(st.sampled_from(sorted(self.held)))
        assert self.kv.release(owner) == self.held.pop(owner)
        del self.requests[owner]

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def preempt(self, data: st.DataObject) -> None:
        """Preempted for recompute: its blocks past the prompt's known ones become its own."""
        owner = data.draw(st.sampled_from(sorted(self.held)))
        request = self.requests.pop(owner)
        self.kv.keep_for_recompute(request, data.draw(st.integers(0, request.num_tokens)))
        assert self.kv.release(owner) == self.held.pop(owner)
        self.preempted.append(request)

    @precondition(lambda self: bool(self.preempted))
    @rule(data=st.data())
    def readmit(self, data: st.DataObject) -> None:
        """Its readmission finds a prefix of its blocks, never its last token."""
        request = self.preempted.pop(data.draw(st.integers(0, len(self.preempted) - 1)))
        hit = self.kv.cached_prefix(request)
        assert hit.num_tokens < request.num_tokens
        need = -(-request.prompt_tokens // BLOCK) - hit.num_blocks + hit.num_reclaimed
        if need > self.kv.num_free_blocks:
            return
        assert serve(self.kv, request) == hit.num_tokens
        self.held[request.request_id] = -(-request.prompt_tokens // BLOCK)
        self.requests[request.request_id] = request

    @invariant()
    def conserved(self) -> None:
        self.kv.check_conservation()
        assert 0 <= self.kv.num_free_blocks <= self.kv.num_blocks
        assert self.kv.num_used_blocks <= sum(self.held.values())
        for owner, count in self.held.items():
            assert len(self.kv.blocks_of(owner)) == count


TestSharingPoolMachine = SharingPoolMachine.TestCase
