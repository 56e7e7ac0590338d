"""BatchLLM: prefix groups admitted together, decode-heavy first, admission bounded by KV memory."""
import numpy as np
import pytest

from servesim.hwmodels import ConstantCostModel
from servesim.policies import create_policy
from servesim.sim.engine.request import Request
from tests.policies.views import FakeCachedPrefix, FakeKv, FakeReplica, decoding, prefilling, waiting
from tests.sim.engine_harness import run_engine


def scheduler(name: str, **params):
    preemption = create_policy("preemption", "recompute", {}, rng=np.random.default_rng(0))
    return create_policy("scheduler", name, params, preemption=preemption, rng=np.random.default_rng(0))


def ids(requests) -> list[int]:
    return [r.request_id for r in requests]


def test_orders_groups_then_requests_by_decode_ratio():
    # Decode ratios (output / prompt): group 1 = (10 + 30) / 200 = 0.2, group 2 = 55 / 200 = 0.275,
    # request 4 (no shared prefix) = 0.25. Groups stay together; inside one, decode-heavy first.
    queue = [waiting(0, 100, 10, prefix_group=1), waiting(1, 100, 50, prefix_group=2),
             waiting(2, 100, 30, prefix_group=1), waiting(3, 100, 5, prefix_group=2), waiting(4, 100, 25)]
    order = scheduler("batchllm").order_waiting(FakeReplica(waiting=queue), 0.0)
    assert ids(order) == [1, 3, 4, 2, 0]


def test_admits_a_prefix_group_consecutively():
    # Interleaved in the queue, group 2's prefix cached (64 tokens). A 200-token budget: FCFS takes
    # the queue's head, 1 and part of 2; BatchLLM the more decode-heavy group 2 whole (36 tokens
    # each), then group 1's first request, whose partner waits for the prefix it computes.
    hit = FakeCachedPrefix(64, 4, 0)
    queue = [waiting(0, 100, 10, prefix_group=1), waiting(1, 100, 50, prefix_group=2),
             waiting(2, 100, 10, prefix_group=1), waiting(3, 100, 50, prefix_group=2)]
    replica = FakeReplica(waiting=queue, kv=FakeKv(prefixes={1: hit, 3: hit}))
    batchllm = scheduler("batchllm", max_num_batched_tokens=200).schedule(replica, 0.0)
    fcfs = scheduler("vllm", max_num_batched_tokens=200).schedule(replica, 0.0)
    assert ids(r for r, _ in batchllm.scheduled) == [1, 3, 0]
    assert ids(r for r, _ in fcfs.scheduled) == [0, 1, 2]


def test_a_group_waits_for_the_request_computing_its_prefix():
    # Request 0 of group 1 is still prefilling: its partners wait until the prefix is cached,
    # and the next group goes ahead.
    running = [prefilling(0, 300, 256, prefix_group=1)]
    queue = [waiting(1, 300, 90, prefix_group=1), waiting(2, 300, 10, prefix_group=2)]
    replica = FakeReplica(running=running, waiting=queue)
    assert ids(r for r, _ in scheduler("batchllm").schedule(replica, 0.0).scheduled) == [0, 2]
    replica.kv.prefixes[1] = FakeCachedPrefix(256, 16, 0)
    assert ids(r for r, _ in scheduler("batchllm").schedule(replica, 0.0).scheduled) == [0, 1, 2]


def test_admission_stops_at_the_kv_threshold_not_at_the_free_blocks():
    # 80 of 100 blocks in use; the newcomer's 160-token prompt takes 10 of the 20 free blocks,
    # which would put 90 in use, over the threshold of 85.
    running = [decoding(0, 1279, 1000, generated=1)]
    newcomer = waiting(1, 160, 10)
    replica = FakeReplica(running=running, waiting=[newcomer], kv=FakeKv(num_blocks=100, num_free_blocks=20))
    assert ids(r for r, _ in scheduler("batchllm", kv_threshold=0.85).schedule(replica, 0.0).scheduled) == [0]
    assert ids(r for r, _ in scheduler("batchllm", kv_threshold=0.9).schedule(replica, 0.0).scheduled) == [0, 1]
    assert ids(r for r, _ in scheduler("vllm").schedule(replica, 0.0).scheduled) == [0, 1]


def test_keeps_its_order_as_the_queue_changes():
    policy = scheduler("batchllm")
    queue = [waiting(0, 100, 10, prefix_group=1), waiting(1, 100, 50, prefix_group=2),
             waiting(2, 100, 30, prefix_group=1), waiting(3, 100, 5, prefix_group=2)]
    replica = FakeReplica(waiting=list(queue))
    first = policy._sorted(replica, 0.0)
    assert policy._sorted(replica, 1.0) is first  # unchanged queue: not sorted again
    replica.waiting.remove(queue[1])  # admitted
    assert ids(policy.order_waiting(replica, 2.0)) == [3, 2, 0]
    replica.waiting.append(waiting(5, 100, 90, prefix_group=1))  # joins group 1, whose ratio stays 0.2
    replica.waiting.insert(0, queue[1])  # preempted, back at the front
    assert ids(policy.order_waiting(replica, 3.0)) == [1, 3, 5, 2, 0]


def offline_batch(num_groups: int, per_group: int, seed: int) -> list[Request]:
    """Shuffled requests sharing 256-token prefixes (16 blocks of 16 tokens), all arriving at 0."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(np.repeat(np.arange(num_groups), per_group))
    return [
        Request(i, 0.0, 256 + int(rng.integers(16, 64)), int(rng.integers(4, 64)),
                prefix_hashes=tuple(int(g) * 1000 + k for k in range(16)), prefix_block_tokens=16)
        for i, g in enumerate(groups)
    ]


def cached_tokens(scheduler_name: str, seed: int) -> int:
    # 150 blocks hold about 7 requests: under FCFS a prefix is often evicted before its group comes back.
    run = run_engine(offline_batch(30, 6, seed), ConstantCostModel(0.01, 1e-5), num_blocks=150,
                     scheduler_name=scheduler_name, prefix_caching=True)
    assert all(r.num_generated == r.output_tokens for r in run.requests)
    return sum(r.num_cached_tokens for r in run.requests)


@pytest.mark.parametrize("seed", [0, 1])
def test_reuses_more_prefix_cache_than_fcfs_on_a_shuffled_offline_batch(seed):
    batchllm, fcfs = cached_tokens("batchllm", seed), cached_tokens("vllm", seed)
    reusable = 30 * 5 * 256  # every request but the first of each group finds its prefix
    assert batchllm > 0.9 * reusable
    assert batchllm > 2 * fcfs


def test_fast_forward_gives_the_same_run():
    # It declares itself stable under decoding: skipping decode-only stretches changes nothing.
    runs = [run_engine(offline_batch(6, 5, 2), ConstantCostModel(0.01, 1e-5), num_blocks=150,
                       scheduler_name="batchllm", prefix_caching=True, fast_forward=ff) for ff in (True, False)]
    fast, slow = ([(r.request_id, r.first_scheduled_s, r.finish_s, r.num_preemptions) for r in run.requests]
                  for run in runs)
    assert [f[0] for f in fast] == [s[0] for s in slow]
    assert np.allclose([f[1:] for f in fast], [s[1:] for s in slow], rtol=0, atol=1e-9)
