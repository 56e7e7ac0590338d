"""Each router's defining behaviour on hand-made views (no SimPy)."""
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.policies import PolicyError, create_policy
from tests.policies.views import FakeCachedPrefix, FakeKv, FakeReplica, decoding, prefilling, waiting


def router(name: str, seed: int = 0, **params):
    import numpy as np

    return create_policy("router", name, params, rng=np.random.default_rng(seed))


def loaded(replica_id: int, num_requests: int, **fields) -> FakeReplica:
    """A replica with `num_requests` short requests decoding."""
    running = [decoding(100 * replica_id + i, 16, 8) for i in range(num_requests)]
    return FakeReplica(replica_id=replica_id, running=running, **fields)


# least_outstanding_tokens ---------------------------------------------------------------------

def test_least_outstanding_tokens_weighs_requests_by_their_work_left():
    # One long prompt queued on replica 0; three short decodes near their end on replica 1.
    long_prompt = FakeReplica(replica_id=0, waiting=[waiting(1, prompt=4000, output=100)])
    short_decodes = FakeReplica(replica_id=1, running=[decoding(10 + i, 16, 8, generated=6) for i in range(3)])
    replicas = [long_prompt, short_decodes]
    assert long_prompt.outstanding_tokens == 4100 and short_decodes.outstanding_tokens == 9
    assert router("least_outstanding_tokens").route(waiting(99), replicas, 0.0) == 1
    assert router("least_outstanding").route(waiting(99), replicas, 0.0) == 0  # counting requests picks the other


def test_least_outstanding_tokens_counts_prefill_progress_and_breaks_ties_by_index():
    half_done = FakeReplica(replica_id=0, running=[prefilling(1, prompt=1000, computed=600, output=10)])
    fresh = FakeReplica(replica_id=1, waiting=[waiting(2, prompt=500, output=10)])
    assert half_done.outstanding_tokens == 410 and fresh.outstanding_tokens == 510
    assert router("least_outstanding_tokens").route(waiting(99), [half_done, fresh], 0.0) == 0
    twins = [FakeReplica(replica_id=0), FakeReplica(replica_id=1)]
    assert router("least_outstanding_tokens").route(waiting(99), twins, 0.0) == 0


# least_kv -----------------------------------------------------------------------------------------

def test_least_kv_compares_the_share_of_memory_used_not_the_blocks():
    big = FakeReplica(replica_id=0, kv=FakeKv(num_blocks=1000, num_free_blocks=500))   # 50% used, 500 blocks
    small = FakeReplica(replica_id=1, kv=FakeKv(num_blocks=100, num_free_blocks=60))   # 40% used, 40 blocks
    assert router("least_kv").route(waiting(99), [big, small], 0.0) == 1


def test_least_kv_counts_the_blocks_its_queue_will_need():
    big = FakeReplica(replica_id=0, kv=FakeKv(num_blocks=1000, num_free_blocks=500))
    # 40% used plus a queued 320-token prompt (20 blocks of 16): 60% once admitted.
    small = FakeReplica(replica_id=1, kv=FakeKv(num_blocks=100, num_free_blocks=60), waiting=[waiting(5, prompt=320)])
    assert router("least_kv").route(waiting(99), [big, small], 0.0) == 0


# power_of_two -----------------------------------------------------------------------------------

def test_power_of_two_picks_the_less_loaded_of_two_random_replicas():
    replicas = [loaded(0, 0), loaded(1, 5), loaded(2, 10)]
    policy = router("power_of_two", seed=7)
    counts = Counter(policy.route(waiting(99), replicas, 0.0) for _ in range(3000))
    # Pairs {0,1} and {0,2} choose 0, {1,2} chooses 1, and the most loaded never wins.
    assert counts[2] == 0
    assert counts[0] / 3000 == pytest.approx(2 / 3, abs=0.04)
    assert counts[1] / 3000 == pytest.approx(1 / 3, abs=0.04)


def test_power_of_two_reads_the_load_of_two_replicas_only():
    class Counted(FakeReplica):
        reads = 0

        @property
        def num_outstanding(self) -> int:
            Counted.reads += 1
            return 0

    replicas = [Counted(replica_id=i) for i in range(16)]
    router("power_of_two").route(waiting(99), replicas, 0.0)
    assert Counted.reads == 2


def test_power_of_two_repeats_for_a_seed_and_serves_a_single_replica():
    replicas = [loaded(i, i % 3) for i in range(8)]
    first = [router("power_of_two", seed=3).route(waiting(i), replicas, 0.0) for i in range(50)]
    again = [router("power_of_two", seed=3).route(waiting(i), replicas, 0.0) for i in range(50)]
    assert first == again
    assert router("power_of_two").route(waiting(1), [loaded(0, 4)], 0.0) == 0


@given(st.lists(st.integers(0, 50), min_size=2, max_size=12), st.integers(0, 1000))
def test_power_of_two_never_sends_to_a_replica_more_loaded_than_every_other(loads, seed):
    replicas = [loaded(i, n) for i, n in enumerate(loads)]
    chosen = router("power_of_two", seed=seed).route(waiting(99), replicas, 0.0)
    assert loads[chosen] <= sorted(loads)[-2]


# session_affinity ---------------------------------------------------------------------------------

def test_session_affinity_keeps_a_session_on_the_replica_of_its_previous_turn():
    policy = router("session_affinity", balance_abs_threshold=2, balance_rel_threshold=1.0)
    replicas = [loaded(0, 3), loaded(1, 1)]
    assert policy.route(waiting(1, session_id="a"), replicas, 0.0) == 1  # first turn: least loaded
    replicas = [loaded(0, 1), loaded(1, 3)]
    assert policy.route(waiting(2, session_id="a"), replicas, 1.0) == 1  # 2 above the least: still its own
    assert policy.route(waiting(3, session_id="b"), replicas, 1.0) == 0  # another session: least loaded
    assert policy.route(waiting(4), replicas, 1.0) == 0                  # no session: least loaded


def test_session_affinity_moves_an_overloaded_session_and_keeps_it_where_it_moved():
    policy = router("session_affinity", balance_abs_threshold=2, balance_rel_threshold=1.0)
    assert policy.route(waiting(1, session_id="a"), [loaded(0, 1), loaded(1, 0)], 0.0) == 1
    assert policy.route(waiting(2, session_id="a"), [loaded(0, 1), loaded(1, 4)], 1.0) == 0  # 3 above: moved
    assert policy.route(waiting(3, session_id="a"), [loaded(0, 2), loaded(1, 0)], 2.0) == 0  # stays moved


def test_affinity_gives_up_only_beyond_both_balance_thresholds():
    policy = router("session_affinity", balance_abs_threshold=2, balance_rel_threshold=3.0)
    assert policy.route(waiting(1, session_id="a"), [loaded(0, 0), loaded(1, 1)], 0.0) == 0
    # 4 above the least (abs exceeded) but 7 < 3 x 3 (rel not): it stays.
    assert policy.route(waiting(2, session_id="a"), [loaded(0, 7), loaded(1, 3)], 1.0) == 0
    assert policy.route(waiting(3, session_id="a"), [loaded(0, 10), loaded(1, 3)], 2.0) == 1


# prefix_affinity ----------------------------------------------------------------------------------

def cached(replica_id: int, num_requests: int, hit_tokens: int, request_id: int = 99) -> FakeReplica:
    """A replica whose prefix cache holds `hit_tokens` of request `request_id`'s prompt."""
    prefixes = {request_id: FakeCachedPrefix(hit_tokens, hit_tokens // 16)} if hit_tokens else {}
    return loaded(replica_id, num_requests, kv=FakeKv(prefixes=prefixes))


def test_prefix_affinity_prefers_the_longest_cached_prefix_over_load():
    replicas = [cached(0, 0, 0), cached(1, 5, 512), cached(2, 8, 1024)]
    assert router("prefix_affinity").route(waiting(99, prompt=2000), replicas, 0.0) == 2


def test_prefix_affinity_breaks_equal_hits_by_load_and_no_hit_goes_to_the_least_loaded():
    replicas = [cached(0, 0, 0), cached(1, 6, 512), cached(2, 4, 512)]
    assert router("prefix_affinity").route(waiting(99, prompt=2000), replicas, 0.0) == 2
    cold = [cached(0, 3, 0), cached(1, 1, 0), cached(2, 2, 0)]
    assert router("prefix_affinity").route(waiting(99, prompt=2000), cold, 0.0) == 1


def test_prefix_affinity_balances_when_the_cached_replica_is_overloaded():
    replicas = [cached(0, 1, 0), cached(1, 40, 1024)]
    policy = router("prefix_affinity", balance_abs_threshold=32, balance_rel_threshold=1.5)
    assert policy.route(waiting(99, prompt=2000), replicas, 0.0) == 0
    within = [cached(0, 10, 0), cached(1, 40, 1024)]  # 30 above the least: within the threshold
    assert policy.route(waiting(99, prompt=2000), within, 0.0) == 1


@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from([0, 16, 64, 256])), min_size=1, max_size=8),
       st.integers(0, 8), st.floats(1.0, 3.0))
def test_prefix_affinity_sends_to_a_longest_hit_or_the_least_loaded(specs, abs_threshold, rel_threshold):
    replicas = [cached(i, n, hit) for i, (n, hit) in enumerate(specs)]
    policy = router("prefix_affinity", balance_abs_threshold=abs_threshold, balance_rel_threshold=rel_threshold)
    chosen = policy.route(waiting(99, prompt=512), replicas, 0.0)
    loads = [n for n, _ in specs]
    hits = [hit for _, hit in specs]
    assert hits[chosen] == max(hits) or loads[chosen] == min(loads)
    if loads[chosen] - min(loads) > abs_threshold:
        assert loads[chosen] <= min(loads) * rel_threshold


# All of them ------------------------------------------------------------------------------------

def test_balance_thresholds_are_validated():
    with pytest.raises(PolicyError, match="balance_rel_threshold"):
        router("prefix_affinity", balance_rel_threshold=0.5)
    with pytest.raises(PolicyError, match="balance_abs_threshold"):
        router("session_affinity", balance_abs_threshold=-1)
