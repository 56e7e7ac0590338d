"""Invariants of every run, over random small workloads and configurations."""
import math
from unittest.mock import patch

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.hwmodels import ConstantCostModel
from servesim.policies.schedulers.ordered import OrderedScheduler
from servesim.sim.engine.request import Request, RequestState
from tests.sim.engine_harness import run_engine

workloads = st.lists(
    st.tuples(st.floats(0, 2.0, allow_nan=False), st.integers(1, 60), st.integers(1, 30)),
    min_size=1,
    max_size=25,
).map(lambda specs: sorted(specs, key=lambda s: s[0]))

victim_orders = st.fixed_dictionaries({"victim": st.sampled_from(["newest", "lowest_priority", "largest"])})
engine_settings = st.fixed_dictionaries(
    {
        "num_blocks": st.integers(2, 40),
        "block_size": st.sampled_from([1, 2, 4, 16]),
        "scheduler": st.fixed_dictionaries(
            {
                "max_num_seqs": st.integers(1, 8),
                "max_num_batched_tokens": st.integers(1, 64),
                "chunked_prefill": st.booleans(),
                "preemptive": st.booleans(),
            }
        ),
        "preemption": victim_orders,
        "replicas": st.integers(1, 3),
        "scheduler_name": st.sampled_from(["vllm", "sjf", "srpt", "edf", "priority"]),
    }
)
cost_models = st.builds(ConstantCostModel, st.floats(0.001, 0.1), st.floats(0, 0.001))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(workloads, engine_settings, cost_models, st.booleans())
def test_every_run_keeps_the_invariants(specs, options, cost_model, fast_forward):
    run = run_engine(specs, cost_model, fast_forward=fast_forward, record_iterations=True, **options)
    finished = [r for r in run.requests if r.state is RequestState.FINISHED]
    for request in run.requests:
        assert request.state in (RequestState.FINISHED, RequestState.REJECTED)
    for replica in run.cluster.replicas:
        replica.kv.check_conservation()
        assert replica.kv.num_used_blocks == 0
    for request in finished:
        assert request.num_generated == request.output_tokens
        assert request.arrival_s <= request.first_scheduled_s <= request.first_token_s <= request.finish_s
    gaps, weights = run.metrics.token_gaps()
    assert weights.sum() == sum(r.output_tokens - 1 for r in finished)
    assert np.all(gaps > 0)
    series = run.metrics.replica_series()
    assert (series["kv_used_blocks"] <= series["kv_total_blocks"]).all()
    assert series["time_s"].is_monotonic_increasing or series.groupby("replica")["time_s"].apply(
        lambda t: t.is_monotonic_increasing).all()
    iterations = run.metrics.iterations()
    assert (iterations["end_s"] > iterations["start_s"]).all()



class TooManyDecisions(Exception):
    """Raised inside a run that has taken more scheduling decisions than its workload can need."""


DECISIONS_PER_TOKEN = 20
"""A generous bound: fuzzing 80,000 random small runs saw at most 3.3 decisions per prompt and
output token; a displacement loop (two requests trading places forever) exceeds any bound."""


crowded_workloads = st.lists(
    st.tuples(st.sampled_from([0.0, 0.01, 0.02, 0.05]), st.integers(1, 20), st.integers(1, 20)),
    min_size=1,
    max_size=5,
).map(sorted)
crowded_settings = st.fixed_dictionaries(
    {
        "num_blocks": st.integers(2, 30),
        "block_size": st.sampled_from([1, 2, 4]),
        "scheduler": st.fixed_dictionaries(
            {
                "max_num_seqs": st.integers(1, 3),
                "max_num_batched_tokens": st.integers(1, 16),
                "chunked_prefill": st.booleans(),
                "preemptive": st.just(True),
            }
        ),
        "preemption": victim_orders,
        "scheduler_name": st.sampled_from(["vllm", "sjf", "srpt", "edf", "priority"]),
    }
)
"""Few requests arriving together into a small pool with small budgets: where displacement fires.
Before the fix, a displacement loop showed up here about once in 5,000 examples (so a run of this
test caught it one time in four), and the regression in tests/policies pins the case it found."""


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(crowded_workloads, crowded_settings, st.booleans())
def test_preemptive_ordered_schedulers_finish_within_bounded_decisions(specs, options, fast_forward):
    cost_model = ConstantCostModel(0.01)
    limit = DECISIONS_PER_TOKEN * sum(prompt + output for _, prompt, output in specs)
    decisions = 0
    schedule = OrderedScheduler.schedule

    def counted(self, replica, now):
        nonlocal decisions
        decisions += 1
        if decisions > limit:
            raise TooManyDecisions(f"{decisions} decisions for {limit // DECISIONS_PER_TOKEN} tokens")
        return schedule(self, replica, now)

    with patch.object(OrderedScheduler, "schedule", counted):
        run = run_engine(specs, cost_model, fast_forward=fast_forward, **options)
    assert all(r.state in (RequestState.FINISHED, RequestState.REJECTED) for r in run.requests)

@settings(max_examples=100)
@given(workloads, engine_settings, cost_models)
def test_fast_forward_gives_the_same_results_as_stepping(specs, options, cost_model):
    stepped = run_engine(specs, cost_model, fast_forward=False, **options)
    jumped = run_engine(specs, cost_model, fast_forward=True, **options)
    assert_same_results(stepped, jumped)


def assert_same_results(stepped, jumped):
    for a, b in zip(stepped.requests, jumped.requests, strict=True):
        assert a.state is b.state and a.replica_id == b.replica_id
        assert a.num_preemptions == b.num_preemptions
        for field in ("first_scheduled_s", "first_token_s", "finish_s", "max_tbt_s"):
            x, y = getattr(a, field), getattr(b, field)
            assert (np.isnan(x) and np.isnan(y)) or abs(x - y) <= 1e-9 * max(1.0, abs(x)), field
    gaps_a, w_a = stepped.metrics.token_gaps()
    gaps_b, w_b = jumped.metrics.token_gaps()
    order_a, order_b = np.argsort(gaps_a, kind="stable"), np.argsort(gaps_b, kind="stable")
    assert w_a.sum() == w_b.sum()
    expanded_a = np.repeat(gaps_a[order_a], w_a[order_a].astype(int))
    expanded_b = np.repeat(gaps_b[order_b], w_b[order_b].astype(int))
    np.testing.assert_allclose(expanded_a, expanded_b, rtol=1e-9, atol=1e-12)
    # Memory too: at every decision the jump also makes, the same blocks are in use.
    used = [run.metrics.replica_series().groupby(["replica", "time_s"])["kv_used_blocks"].last()
            for run in (stepped, jumped)]
    common = used[0].index.intersection(used[1].index)
    assert (used[0][common] == used[1][common]).all()


requests_with_prefixes = st.lists(
    st.tuples(
        st.floats(0, 2.0, allow_nan=False),
        st.integers(1, 60),
        st.integers(1, 30),
        st.sampled_from([None, 0, 1, 2]),
        st.one_of(st.none(), st.floats(0.01, 1.0)),
    ),
    min_size=1,
    max_size=25,
).map(lambda specs: sorted(specs, key=lambda s: s[0]))


def build_requests(specs):
    requests = []
    for i, (arrival, prompt, output, group, timeout) in enumerate(specs):
        request = Request(i, arrival, prompt, output)
        if group is not None:
            request.prefix_hashes = tuple(100 * group + k for k in range(4))
            request.prefix_block_tokens = 8
            request.session_id = f"session-{group}"
        if timeout is not None:
            request.timeout_at_s = arrival + timeout
        requests.append(request)
    return requests


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests_with_prefixes,
    st.integers(2, 40),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from(["vllm", "sarathi", "priority", "srpt", "orca"]),
    st.sampled_from(["recompute", "swap"]),
    st.booleans(),
    st.integers(0, 20),
)
def test_swap_caching_and_timeouts_keep_the_invariants(specs, num_blocks, block_size, scheduler, preemption,
                                                        caching, host_blocks):
    requests = build_requests(specs)
    params = {"max_num_seqs": 4, "max_num_batched_tokens": 16}
    run = run_engine(requests, ConstantCostModel(0.01, 0.0005), num_blocks=num_blocks, block_size=block_size,
                     scheduler=params, scheduler_name=scheduler, preemption_name=preemption,
                     host_blocks=host_blocks, swap_block_s=0.002, prefix_caching=caching)
    for request in requests:
        assert request.state in (RequestState.FINISHED, RequestState.REJECTED, RequestState.DROPPED)
        if request.state is RequestState.FINISHED:
            assert request.num_generated == request.output_tokens
            assert request.arrival_s <= request.first_scheduled_s <= request.first_token_s <= request.finish_s
            # the first admission hits prompt blocks only; a readmission its generated ones too, never its last token
            readmitted = request.num_preemptions * (request.prompt_tokens + request.output_tokens - 1)
            assert request.num_cached_tokens <= request.prompt_tokens + readmitted
        if request.state is RequestState.DROPPED:
            assert request.finish_s == request.timeout_at_s
            assert math.isnan(request.first_scheduled_s)
    replica = run.cluster.replicas[0]
    for pool in (replica.kv, replica.host):
        pool.check_conservation()
        assert pool.num_used_blocks == 0
    series = run.metrics.replica_series()
    assert (series["kv_used_blocks"] <= series["kv_total_blocks"]).all()


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests_with_prefixes,
    st.integers(2, 40),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from(["vllm", "sjf", "priority", "srpt", "orca", "sarathi"]),
    st.sampled_from(["recompute", "swap"]),
    st.booleans(),
    st.integers(0, 20),
)
def test_fast_forward_gives_the_same_results_as_stepping_with_swap_caching_and_timeouts(
        specs, num_blocks, block_size, scheduler, preemption, caching, host_blocks):
    runs = [
        run_engine(build_requests(specs), ConstantCostModel(0.01, 0.0005), num_blocks=num_blocks,
                   block_size=block_size, scheduler={"max_num_seqs": 4, "max_num_batched_tokens": 16},
                   scheduler_name=scheduler, preemption_name=preemption, host_blocks=host_blocks,
                   swap_block_s=0.002, prefix_caching=caching, fast_forward=fast_forward)
        for fast_forward in (False, True)
    ]
    assert_same_results(*runs)


def test_fast_forward_grows_each_requests_own_blocks_when_the_batch_is_not_in_admission_order():
    # SJF serves the short late arrival before the long early one, so its batch is not in admission
    # order; the fast-forward used to pair each request with another's context when allocating
    # blocks (found by fuzzing: a swapped request later came back larger than the free pool).
    specs = [(0.0, 2, 60), (0.05, 13, 12)]
    used = []
    for fast_forward in (False, True):
        run = run_engine(specs, ConstantCostModel(0.01), scheduler_name="sjf", block_size=4, fast_forward=fast_forward)
        used.append(run.metrics.replica_series().groupby("time_s")["kv_used_blocks"].last())
    common = used[0].index.intersection(used[1].index)
    assert len(common) >= 5 and len(used[1]) < len(used[0])
    assert (used[0][common] == used[1][common]).all()
