"""Exact timelines of the engine's mechanisms: swap preemption, timeouts, prefix reuse, padding."""
import pytest

from servesim.hwmodels import ConstantCostModel
from servesim.sim.engine.request import Request, RequestState
from tests.sim.engine_harness import run_engine

STEP = 0.1


def approx(x):
    return pytest.approx(x, abs=1e-12)


def test_swap_preemption_keeps_the_victims_progress_and_pays_the_link_both_ways():
    # 4 blocks of 2 tokens; at t=.2 A needs a third block and B (newest) is swapped out.
    run = run_engine(
        [(0.0, 3, 3), (0.0, 3, 3)], ConstantCostModel(STEP), num_blocks=4, block_size=2,
        preemption_name="swap", host_blocks=10, swap_block_s=0.01,
    )
    a, b = run.requests
    # The iteration at .2 also copies B's 2 blocks out: .1 + 2 x .01.
    assert a.finish_s == approx(0.32)
    # At .32 B's 2 blocks come back (.02) and it decodes its last token: no recompute.
    assert b.num_preemptions == 1 and b.num_swaps == 1
    assert b.finish_s == approx(0.44)
    assert b.max_tbt_s == approx(0.24)
    replica = run.cluster.replicas[0]
    assert replica.host.num_used_blocks == 0 and replica.kv.num_used_blocks == 0


def test_swap_falls_back_to_recompute_when_host_memory_is_full():
    run = run_engine(
        [(0.0, 3, 3), (0.0, 3, 3)], ConstantCostModel(STEP), num_blocks=4, block_size=2,
        preemption_name="swap", host_blocks=1, swap_block_s=0.01,
    )
    a, b = run.requests
    assert b.num_preemptions == 1 and b.num_swaps == 0
    assert a.finish_s == approx(0.3) and b.finish_s == approx(0.4)  # the recompute timeline


def test_a_request_still_waiting_at_its_timeout_is_dropped_at_that_time():
    a = Request(0, 0.0, 4, 3)
    b = Request(1, 0.0, 4, 3, timeout_at_s=0.15)
    c = Request(2, 0.0, 4, 3, timeout_at_s=0.35)
    run = run_engine([a, b, c], ConstantCostModel(STEP), scheduler={"max_num_seqs": 1})
    assert a.state is RequestState.FINISHED and a.finish_s == approx(0.3)
    assert b.state is RequestState.DROPPED and b.finish_s == approx(0.15)
    # C was admitted at .3, before its timeout: it is served, not dropped.
    assert c.state is RequestState.FINISHED and c.first_scheduled_s == approx(0.3)
    assert run.cluster.num_done == 3


def test_prefix_cache_reuses_the_shared_blocks_of_an_earlier_request():
    cost = ConstantCostModel(STEP, per_token_s=0.001)
    first = Request(0, 0.0, 32, 2, prefix_hashes=(7, 8), prefix_block_tokens=16)
    second = Request(1, 0.5, 40, 2, prefix_hashes=(7, 8), prefix_block_tokens=16)
    stranger = Request(2, 1.0, 40, 2, prefix_hashes=(9, 8), prefix_block_tokens=16)
    run_engine([first, second, stranger], cost, block_size=16, prefix_caching=True)
    assert first.num_cached_tokens == 0
    # Both 16-token blocks of the shared prefix are reused: 8 of 40 tokens are computed.
    assert second.num_cached_tokens == 32
    assert second.first_token_s == approx(0.5 + STEP + 8 * 0.001)
    # Hash ids stand for the whole prefix up to their block: a different first block shares nothing.
    assert stranger.num_cached_tokens == 0


def test_a_fully_cached_prompt_still_computes_its_last_token():
    first = Request(0, 0.0, 32, 2, prefix_hashes=(7, 8), prefix_block_tokens=16)
    again = Request(1, 0.5, 32, 2, prefix_hashes=(7, 8), prefix_block_tokens=16)
    run_engine([first, again], ConstantCostModel(STEP), block_size=16, prefix_caching=True)
    assert again.num_cached_tokens == 16  # one whole block is recomputed so the last token has logits
    assert again.state is RequestState.FINISHED


def test_cached_blocks_are_evicted_least_recently_used_first():
    # 4 blocks: A's and B's prefixes are cached after they finish; C needs 2 blocks and evicts
    # the least recently used prefix (A's), so D (A's prefix again) misses and E (B's) hits.
    specs = [
        Request(0, 0.0, 32, 1, prefix_hashes=(1, 2), prefix_block_tokens=16),
        Request(1, 1.0, 32, 1, prefix_hashes=(3, 4), prefix_block_tokens=16),
        Request(2, 2.0, 32, 1),
        Request(3, 3.0, 17, 1, prefix_hashes=(1, 2), prefix_block_tokens=16),
        Request(4, 4.0, 17, 1, prefix_hashes=(3, 4), prefix_block_tokens=16),
    ]
    run_engine(specs, ConstantCostModel(STEP), num_blocks=4, block_size=16, prefix_caching=True)
    assert [r.num_cached_tokens for r in specs] == [0, 0, 0, 0, 16]


@pytest.mark.parametrize("fast_forward", [True, False])
@pytest.mark.parametrize(("num_blocks", "caching", "cached", "computed"), [
    (5, True, 4, 1),  # both full blocks of B (prompt and generated tokens) are still cached
    (4, True, 2, 3),  # A's third block evicted B's deepest one: B recomputes from there
    (5, False, 0, 5),  # without prefix caching B recomputes everything
])
def test_a_request_preempted_for_recompute_reuses_its_own_blocks_unless_evicted(num_blocks, caching, cached, computed,
                                                                                 fast_forward):
    # Blocks of 2 tokens. A and B prefill 3 tokens each (.106) and decode one (.208); at .208 both
    # need a third block, so B (newest) is preempted with 4 computed tokens in 2 full blocks. A
    # decodes alone (.309) and finishes; B comes back with 5 tokens, at least the last one to compute.
    cost = ConstantCostModel(STEP, per_token_s=0.001)
    a, b = Request(0, 0.0, 3, 3), Request(1, 0.0, 3, 3)
    run_engine([a, b], cost, num_blocks=num_blocks, block_size=2, prefix_caching=caching, fast_forward=fast_forward)
    assert b.num_preemptions == 1 and a.finish_s == approx(0.309)
    assert b.num_cached_tokens == cached
    assert b.finish_s == approx(0.309 + STEP + computed * 0.001)
