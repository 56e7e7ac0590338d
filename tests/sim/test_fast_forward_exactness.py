"""Fast-forward equals stepping for every built-in scheduler that declares it, both ways of
running a stretch through events, with asynchronous scheduling, prefix caching, swapping,
timeouts and several replicas."""
from contextlib import contextmanager
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from servesim.hwmodels import ConstantCostModel, CostModel
from servesim.hwmodels.layer_slices import LayerSliceCostModel
from servesim.policies import create_policy, registry
from servesim.policies.base import RouterPolicy
from servesim.policies.registry import register
from servesim.sim.engine import stretch as stretch_module
from servesim.sim.engine.request import Request
from tests.builds import interpreted_only
from tests.sim.engine_harness import run_engine
from tests.sim.test_engine_properties import assert_same_results, build_requests, requests_with_prefixes

stretch_apply = stretch_module._apply

ROUTERS = ["round_robin", "least_outstanding", "least_outstanding_tokens", "least_kv", "power_of_two",
           "session_affinity", "prefix_affinity"]
FAST_FORWARDED = ["vllm", "sarathi", "orca", "batchllm", "laps", "past_future", "flowprefill", "sjf", "srpt", "edf",
                  "priority", "layered_prefill"]


def scheduler_params(name: str, max_seqs: int, max_tokens: int, preemptive: bool) -> dict:
    params = {"max_num_seqs": max_seqs, "max_num_batched_tokens": max(max_tokens, max_seqs), "chunked_prefill": True}
    if name in ("sjf", "srpt", "edf", "priority"):
        params["preemptive"] = preemptive
    if name == "past_future":
        params["min_history"] = 2
    if name == "layered_prefill":
        params.update(chunked_prefill=False, num_layer_groups=3)
    return params


def priced_for(scheduler: str, cost_model: ConstantCostModel) -> CostModel:
    """Layered prefill's slices priced through their layers (a model of 6 layers), as the runner does."""
    return LayerSliceCostModel(cost_model, 6) if scheduler == "layered_prefill" else cost_model


@pytest.mark.parametrize("name", FAST_FORWARDED)
def test_every_scheduler_that_is_fast_forwarded_declares_it(name):
    policy = create_policy("scheduler", name, scheduler_params(name, 4, 16, False),
                           preemption=create_policy("preemption", "recompute", {}))
    assert policy.stable_under_decode is True


def test_static_batching_is_stepped():
    # Its padded slots' context grows with a step count it keeps itself: each step must be asked.
    policy = create_policy("scheduler", "static", {}, preemption=create_policy("preemption", "recompute", {}))
    assert policy.stable_under_decode is False


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests_with_prefixes,
    st.sampled_from(FAST_FORWARDED),
    st.fixed_dictionaries({
        "num_blocks": st.integers(4, 60),
        "block_size": st.sampled_from([1, 2, 4, 8]),
        "replicas": st.integers(1, 3),
        "async_scheduling": st.booleans(),
        "progress_observed": st.booleans(),
        "prefix_caching": st.booleans(),
        "preemption_name": st.sampled_from(["recompute", "swap"]),
        "host_blocks": st.integers(0, 20),
        "router": st.sampled_from(ROUTERS),
    }),
    st.integers(1, 6), st.integers(1, 48), st.booleans(),
    st.builds(ConstantCostModel, st.floats(0.001, 0.1), st.floats(0, 0.002)),
)
# A request preempted for recompute leaves its blocks cached; as the decodes beside it evicted
# them, readmitting it took fewer free blocks, so it fit a few steps after it had not: a stretch
# with it waiting ran past that step.
@example(
    specs=[(0.0, 14, 25, 0, None), (0.0, 14, 25, 1, None), (0.0, 35, 11, None, None), (0.25, 1, 3, None, None),
           (0.5, 1, 4, None, None), (1.25, 26, 18, 1, None), (1.75, 20, 18, None, None), (2.0, 16, 18, 1, None)],
    scheduler="sjf",
    options={"num_blocks": 35, "block_size": 2, "replicas": 1, "async_scheduling": False,
             "progress_observed": False, "prefix_caching": True, "preemption_name": "swap", "host_blocks": 16,
             "router": "round_robin"},
    max_seqs=4, max_tokens=7, preemptive=False, cost_model=ConstantCostModel(0.05078125, 0.0),
)
def test_fast_forward_gives_the_same_results_as_stepping_for_every_scheduler(
        specs, scheduler, options, max_seqs, max_tokens, preemptive, cost_model):
    params = scheduler_params(scheduler, max_seqs, max_tokens, preemptive)
    if create_policy("router", options["router"], {}).reads_progress:
        options["progress_observed"] = True  # hiding progress from a router that reads it changes its choices
    runs = [run_engine(build_requests(specs), priced_for(scheduler, cost_model), scheduler_name=scheduler,
                       scheduler=params,
                       swap_block_s=0.002, fast_forward=fast_forward, **options)
            for fast_forward in (False, True)]
    assert_same_results(*runs)
    assert abs(runs[0].end_s - runs[1].end_s) <= 1e-9 * max(1.0, runs[0].end_s)  # the run's simulated length


class ProgressLog(RouterPolicy):
    """Round robin that writes down, at every arrival, what every replica's requests have computed
    and how many KV blocks are in use: what a router reading progress would see."""

    def __init__(self, params, rng=None):
        super().__init__(params, rng)
        self.seen = []

    def route(self, request, replicas, now):
        self.seen.append((request.request_id, [
            (replica.kv.num_free_blocks, [(r.request_id, r.num_computed_tokens, r.num_generated)
                                          for r in replica.running]) for replica in replicas]))
        return request.request_id % len(replicas)


@contextmanager
def registered(kind, name, cls):
    """`cls` registered as `name` inside the block only (the registry is shared by all tests)."""
    registry.all_policies()
    with patch.object(registry, "_REGISTRY", dict(registry._REGISTRY)):
        register(kind, name)(cls)
        yield


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(requests_with_prefixes, st.integers(1, 3), st.booleans(), st.booleans())
def test_a_router_reading_progress_sees_what_stepping_shows(specs, replicas, async_scheduling, caching):
    logs = []
    for fast_forward in (False, True):
        with registered("router", "test_progress_log", ProgressLog):
            run = run_engine(build_requests(specs), ConstantCostModel(0.01, 0.0005), num_blocks=40, block_size=2,
                             replicas=replicas, router="test_progress_log", async_scheduling=async_scheduling,
                             prefix_caching=caching, fast_forward=fast_forward)
        logs.append(run.cluster.router.seen)
    assert logs[0] == logs[1]


def test_builtin_routers_declare_what_they_read_and_plug_ins_are_assumed_to_read_progress():
    assert create_policy("router", "round_robin", {}).reads_progress is False
    assert create_policy("router", "least_outstanding", {}).reads_progress is False
    assert create_policy("router", "power_of_two", {}).reads_progress is False
    assert create_policy("router", "session_affinity", {}).reads_progress is False
    # Tokens left, KV blocks and cache contents change while requests decode.
    assert create_policy("router", "least_outstanding_tokens", {}).reads_progress is True
    assert create_policy("router", "least_kv", {}).reads_progress is True
    assert create_policy("router", "prefix_affinity", {}).reads_progress is True
    assert ProgressLog(RouterPolicy.Params()).reads_progress is True


def long_decodes_and_late_arrivals():
    # Two long requests decode on each of two replicas while a third of the arrivals trickle in.
    return [Request(i, 0.0, 8, 400) for i in range(4)] + [Request(4 + i, 1.0 + 0.37 * i, 8, 3) for i in range(6)]


@pytest.mark.parametrize("observed", [True, False])
@pytest.mark.parametrize("async_scheduling", [True, False])
def test_a_stretch_runs_on_through_arrivals_with_few_decisions(observed, async_scheduling):
    runs = [run_engine(long_decodes_and_late_arrivals(), ConstantCostModel(0.01), replicas=2,
                       async_scheduling=async_scheduling, progress_observed=observed, fast_forward=fast_forward)
            for fast_forward in (False, True)]
    assert_same_results(*runs)
    stepped, jumped = (sum(r.num_engine_steps for r in run.cluster.replicas) for run in runs)
    assert stepped >= 800
    assert jumped < 80


@interpreted_only
def test_the_step_planned_before_an_arrival_is_applied_with_the_stretch_it_cut():
    # With asynchronous scheduling, the step after the one an arrival falls into was planned
    # before it: an unobserved stretch waits for that step's end too and applies both at once.
    planned = []

    def applying(*args, **kwargs):
        planned.append(kwargs.get("planned_last", False))
        return stretch_apply(*args, **kwargs)

    runs = []
    for fast_forward in (False, True):
        with patch.object(stretch_module, "_apply", applying):
            runs.append(run_engine(long_decodes_and_late_arrivals(), ConstantCostModel(0.01), replicas=2,
                                   async_scheduling=True, progress_observed=False, fast_forward=fast_forward,
                                   record_iterations=True, record_tokens=True))
    assert_same_results(*runs)
    assert planned.count(True) == 6  # one for each late arrival
    stepped, jumped = (run.metrics.iterations().sort_values(["replica", "start_s"]).reset_index(drop=True)
                       for run in runs)
    pd.testing.assert_frame_equal(stepped, jumped, check_exact=False, rtol=1e-12)
    tokens = [pd.read_parquet(run.metrics.tokens.close()).sort_values(["request_id", "token_index"]) for run in runs]
    np.testing.assert_allclose(tokens[0]["time_s"], tokens[1]["time_s"], rtol=1e-12)


def test_a_scheduler_that_may_interrupt_is_asked_at_every_arrival_as_when_stepping():
    asked = []

    class Asking(create_policy("scheduler", "vllm", {}, preemption=create_policy("preemption", "recompute", {}))
                 .__class__):
        def interrupt(self, in_flight, arrival, replica, now):
            asked[-1].append((arrival.request_id, round(now, 9), len(in_flight.entries)))
            return False

    for fast_forward in (False, True):
        asked.append([])
        with registered("scheduler", "test_asking", Asking):
            run_engine(long_decodes_and_late_arrivals(), ConstantCostModel(0.01), scheduler_name="test_asking",
                       fast_forward=fast_forward)
    assert len(asked[0]) == 6 and asked[0] == asked[1]
