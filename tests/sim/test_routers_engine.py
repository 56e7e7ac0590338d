"""The routers inside the engine: the replica's count of tokens left stays exact, and each router's
defining behaviour shows in a run."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.hwmodels import ConstantCostModel
from servesim.policies.base import RouterPolicy
from servesim.policies.views import tokens_left
from servesim.sim.engine.request import Request
from tests.sim.engine_harness import run_engine
from tests.sim.test_engine_properties import build_requests, requests_with_prefixes
from tests.sim.test_fast_forward_exactness import registered

STEP = ConstantCostModel(0.01, 0.0005)


class TokenAudit(RouterPolicy):
    """Least outstanding tokens that, at every arrival, recounts each replica's tokens left from its
    queues (staged arrivals included) and records both numbers."""

    def __init__(self, params, rng=None):
        super().__init__(params, rng)
        self.seen = []

    def route(self, request, replicas, now):
        for view in replicas:
            replica = view._replica
            outstanding = list(replica.waiting) + list(replica._running) + list(replica._staged)
            self.seen.append((view.outstanding_tokens, sum(tokens_left(r) for r in outstanding)))
        return min(range(len(replicas)), key=lambda i: (replicas[i].outstanding_tokens, i))


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(requests_with_prefixes, st.integers(4, 60), st.sampled_from([1, 2, 4]), st.sampled_from(["vllm", "sarathi",
       "srpt", "flowprefill"]), st.sampled_from(["recompute", "swap"]), st.booleans(), st.booleans(), st.booleans())
def test_the_replicas_count_of_tokens_left_is_exact_at_every_arrival_and_zero_at_the_end(
        specs, num_blocks, block_size, scheduler, preemption, caching, fast_forward, async_scheduling):
    with registered("router", "test_token_audit", TokenAudit):
        run = run_engine(build_requests(specs), STEP, num_blocks=num_blocks, block_size=block_size, replicas=2,
                         scheduler_name=scheduler, preemption_name=preemption, prefix_caching=caching,
                         host_blocks=10, swap_block_s=0.001, router="test_token_audit", fast_forward=fast_forward,
                         async_scheduling=async_scheduling, scheduler={"max_num_seqs": 3})
    for kept, recounted in run.cluster.router.seen:
        assert kept == recounted
    assert [replica.outstanding_tokens for replica in run.cluster.replicas] == [0, 0]


def test_least_outstanding_tokens_sends_work_away_from_a_replica_busy_with_a_long_request():
    # Request 0 (4,000-token prompt) lands on replica 0; short ones then all go to replica 1 until
    # its tokens left exceed replica 0's, where counting requests would alternate.
    requests = [(0.0, 4000, 50)] + [(0.01 * (i + 1), 20, 10) for i in range(6)]
    run = run_engine(requests, STEP, replicas=2, router="least_outstanding_tokens", num_blocks=2000)
    assert [r.replica_id for r in run.requests] == [0, 1, 1, 1, 1, 1, 1]
    alternating = run_engine(requests, STEP, replicas=2, router="least_outstanding", num_blocks=2000)
    assert [r.replica_id for r in alternating.requests][:3] == [0, 1, 0]


def test_least_kv_sends_work_to_the_replica_with_the_emptier_memory():
    # Replica 0 holds a request with a long context; the next arrivals all go to replica 1.
    requests = [(0.0, 1600, 200)] + [(0.5 + 0.01 * i, 16, 5) for i in range(4)]
    run = run_engine(requests, STEP, replicas=2, router="least_kv", num_blocks=200, block_size=16)
    assert [r.replica_id for r in run.requests] == [0, 1, 1, 1, 1]


def test_power_of_two_with_two_replicas_is_join_the_shortest_queue():
    # With two replicas both are always sampled: the arrival joins the one with fewer requests.
    requests = [(0.0, 16, 100), (0.0, 16, 100), (0.0, 16, 100), (0.5, 16, 2), (0.6, 16, 2)]
    run = run_engine(requests, STEP, replicas=2, router="power_of_two", seed=3)
    first_two = [r.replica_id for r in run.requests[:2]]
    assert sorted(first_two) == [0, 1]
    heavier = run.requests[2].replica_id
    assert [r.replica_id for r in run.requests[3:]] == [1 - heavier, 1 - heavier]


def test_session_affinity_keeps_a_conversation_on_the_replica_that_cached_its_turns():
    # Two sessions of three turns; each later turn's prompt extends the previous one's prefix.
    requests = []
    for turn in range(3):
        for index, session in enumerate(("a", "b")):
            request = Request(len(requests), 1.0 * turn + 0.01 * index, 64 * (turn + 1), 4)
            request.session_id = session
            request.prefix_hashes = tuple(1000 * index + k for k in range(4 * (turn + 1)))
            request.prefix_block_tokens = 16
            requests.append(request)
    sticky = run_engine(list(requests), STEP, replicas=3, router="session_affinity", prefix_caching=True)
    by_session = {s: {r.replica_id for r in sticky.requests if r.session_id == s} for s in ("a", "b")}
    assert all(len(replicas) == 1 for replicas in by_session.values())
    assert all(r.num_cached_tokens > 0 for r in sticky.requests if r.arrival_s >= 1.0)


def test_prefix_affinity_follows_the_cache_and_round_robin_does_not():
    # Every request shares one 256-token prefix; the first computes it on its replica.
    def requests():
        out = []
        for i in range(6):
            request = Request(i, 0.2 * i, 300, 4)
            request.prefix_hashes = tuple(range(16))
            request.prefix_block_tokens = 16
            out.append(request)
        return out

    affine = run_engine(requests(), STEP, replicas=3, router="prefix_affinity", prefix_caching=True)
    assert {r.replica_id for r in affine.requests} == {0}
    assert all(r.num_cached_tokens == 256 for r in affine.requests[1:])
    spread = run_engine(requests(), STEP, replicas=3, router="round_robin", prefix_caching=True)
    assert sum(r.num_cached_tokens for r in spread.requests) == 3 * 256


class PlacementLog(RouterPolicy):
    """Round robin that writes down the pool, role and hardware of every replica it is shown."""

    seen: set = set()

    def route(self, request, replicas, now):
        PlacementLog.seen |= {(view.pool, view.role, view.hardware) for view in replicas}
        return request.request_id % len(replicas)


def test_a_router_sees_the_default_pool_role_and_hardware_of_todays_replicas():
    from servesim.sim import load_config, run_experiment

    config = {"hardware": "a100-80g", "cost_model": {"kind": "constant", "iteration_s": 0.01},
              "cluster": {"replicas": 2, "router": {"name": "test_placement_log"}},
              "workload": {"arrival": {"rate": 20.0}, "prompt_tokens": {"dist": "fixed", "value": 16},
                           "output_tokens": {"dist": "fixed", "value": 2}, "num_requests": 4},
              "output": {"plots": False}}
    PlacementLog.seen = set()
    with registered("router", "test_placement_log", PlacementLog):
        run_experiment(load_config(config))
    assert PlacementLog.seen == {("default", "unified", "a100-80g")}
