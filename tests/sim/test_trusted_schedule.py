"""Trusted built-in schedulers decide on the engine's objects, unchecked: only where that changes nothing.

The property test runs both ways at every decision of random runs (memory shortages,
preemption by recompute and swap, prefix caching, asynchronous scheduling): the decision made
on the engine's own objects is the one made on views, and the view decision passes the check.
"""
from __future__ import annotations

from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.hwmodels import ConstantCostModel
from servesim.policies import create_policy
from servesim.policies.contract import PolicyContractError
from servesim.policies.schedulers.vllm import VllmSchedulerPolicy
from servesim.sim.engine import replica as replica_module
from servesim.sim.engine import trusted
from servesim.sim.engine.bookkeeping import checked_schedule
from servesim.sim.engine.views import ReplicaView, RequestView
from tests.builds import interpreted_only
from tests.sim.engine_harness import run_engine
from tests.sim.test_engine_properties import assert_same_results, build_requests
from tests.sim.test_fast_forward_exactness import registered


def _scheduler(name: str, params: dict | None = None, preemption: str = "recompute"):
    return create_policy("scheduler", name, params or {}, preemption=create_policy("preemption", preemption, {}))


@pytest.mark.parametrize(("name", "params", "preemption"), [
    ("vllm", {}, "recompute"),
    ("vllm", {"prefill_first": True, "chunked_prefill": False}, "swap"),
    ("vllm", {"reserve_full_isl": False}, "recompute"),
    ("vllm", {"preemptive": True}, "recompute"),
    ("sarathi", {}, "swap"),
])
def test_vllm_fcfs_and_sarathi_with_builtin_preemption_are_trusted(name, params, preemption):
    assert trusted.is_trusted(_scheduler(name, params, preemption))


@pytest.mark.parametrize(("name", "params"), [
    ("vllm", {"queue": {"name": "priority"}}),
    ("vllm", {"queue": {"name": "sjf"}}),
    ("sjf", {}),
    ("orca", {}),
    ("static", {}),
])
def test_other_orders_and_schedulers_are_checked(name, params):
    assert not trusted.is_trusted(_scheduler(name, params))


def test_a_subclass_or_a_plug_in_preemption_policy_is_checked():
    class Tweaked(VllmSchedulerPolicy):
        pass

    class Mine(type(create_policy("preemption", "recompute", {}))):
        pass

    assert not trusted.is_trusted(Tweaked(Tweaked.Params(), create_policy("preemption", "recompute", {})))
    assert not trusted.is_trusted(VllmSchedulerPolicy(VllmSchedulerPolicy.Params(), Mine(Mine.Params())))


def test_a_plug_in_still_receives_read_only_views():
    seen = set()

    class Looking(VllmSchedulerPolicy):
        def schedule(self, replica, now):
            seen.add((type(replica), *{type(r) for r in replica.running}))
            return super().schedule(replica, now)

    with registered("scheduler", "test_looking", Looking):
        run_engine([(0.0, 8, 3), (0.0, 8, 3)], ConstantCostModel(0.01), scheduler_name="test_looking")
    assert seen == {(ReplicaView,), (ReplicaView, RequestView)}


def test_an_exception_in_a_trusted_scheduler_is_its_contract_error():
    scheduler = _scheduler("vllm", {"prefill_first": True, "chunked_prefill": False})  # the engine asks it
    run = run_engine([(0.0, 8, 3)], ConstantCostModel(0.01))
    replica = run.cluster.replicas[0]
    scheduler.schedule = lambda replica, now: 1 / 0  # type: ignore[method-assign]
    decide = trusted.decision_source(replica, scheduler, replica_module.DecisionChecker(replica, scheduler))
    with pytest.raises(PolicyContractError, match=r"scheduler\.schedule.*ZeroDivisionError"):
        decide(2.5)


@pytest.mark.parametrize(("name", "params", "known"), [
    ("vllm", {}, True),
    ("vllm", {"reserve_full_isl": False, "chunked_prefill": False}, True),
    ("sarathi", {}, True),
    ("vllm", {"prefill_first": True, "chunked_prefill": False}, False),
    ("vllm", {"preemptive": True}, False),
    ("vllm", {"queue": {"name": "priority"}}, False),
])
def test_the_engine_makes_the_plain_vllm_and_sarathi_decisions_itself(name, params, known):
    run = run_engine([(0.0, 8, 3)], ConstantCostModel(0.01))
    assert (trusted.known_decision(_scheduler(name, params), run.cluster.replicas[0]) is not None) == known


def test_only_a_decision_that_preempts_is_left_to_the_scheduler():
    """Long outputs from a small pool: the scheduler is asked only when a victim must be chosen."""
    answers = []
    original = VllmSchedulerPolicy.schedule

    def schedule(self, replica, now):
        decision = original(self, replica, now)
        answers.append(bool(decision.preempted))
        return decision

    specs = [(0.01 * i, 6, 30) for i in range(8)]
    with patch.object(VllmSchedulerPolicy, "schedule", schedule):
        run = run_engine(specs, ConstantCostModel(0.01), num_blocks=24, block_size=4)
    assert sum(r.num_preemptions for r in run.requests) > 0
    assert answers and all(answers)


def _both_ways(replica, scheduler, checker):
    """The trusted decision, after asserting that the views and the check give the same one."""
    assert trusted.is_trusted(scheduler)
    fast = trusted.decision_source(replica, scheduler, checker)

    def decide(now):
        viewed = checked_schedule(scheduler, replica.view, checker, now)  # raises if the check fails
        decision = fast(now)
        assert [(id(r), n) for r, n in decision.entries] == [(id(r), n) for r, n in viewed.entries]
        assert [id(r) for r in decision.preempted] == [id(r) for r in viewed.preempted]
        assert (decision.padding, decision.wake_at, decision.resume) == ([], None, None)
        assert (viewed.padding, viewed.wake_at, viewed.resume) == ([], None, None)
        return decision

    return decide


# Long outputs from a small pool: running requests outgrow the free memory and are preempted.
crowded_requests = st.lists(
    st.tuples(st.floats(0, 1.0, allow_nan=False), st.integers(1, 40), st.integers(1, 80),
              st.sampled_from([None, 0, 1]), st.one_of(st.none(), st.none(), st.floats(0.01, 1.0))),
    min_size=1, max_size=25,
).map(lambda specs: sorted(specs, key=lambda s: s[0]))


@interpreted_only
@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(
    crowded_requests,
    st.sampled_from([("vllm", {}), ("vllm", {"reserve_full_isl": False}), ("vllm", {"preemptive": True}),
                     ("sarathi", {}), ("vllm", {"prefill_first": True, "chunked_prefill": False})]),
    st.fixed_dictionaries({
        "num_blocks": st.integers(6, 40),
        "block_size": st.sampled_from([2, 4, 8]),
        "replicas": st.integers(1, 2),
        "async_scheduling": st.booleans(),
        "prefix_caching": st.booleans(),
        "preemption_name": st.sampled_from(["recompute", "swap"]),
        "host_blocks": st.integers(0, 40),
        "fast_forward": st.booleans(),
    }),
    st.integers(1, 8), st.integers(6, 96),
)
def test_trusted_decisions_are_the_checked_view_decisions(specs, scheduler, options, max_seqs, max_tokens):
    name, params = scheduler
    params = {**params, "max_num_seqs": max_seqs, "max_num_batched_tokens": max(max_tokens, max_seqs)}
    requests = build_requests(specs)
    with patch.object(replica_module, "decision_source", _both_ways):
        run = run_engine(requests, ConstantCostModel(0.01, 0.0005), scheduler_name=name, scheduler=params,
                         swap_block_s=0.002, **options)
    assert all(r.finish_s >= r.arrival_s for r in run.requests)


@interpreted_only
def test_a_run_through_views_gives_the_same_results():
    specs = [(0.05 * i, 20 + 7 * i % 50, 5 + 3 * i % 20) for i in range(40)]
    runs = []
    for trust in (False, True):
        with patch.object(trusted, "is_trusted", lambda scheduler, trust=trust: trust):
            runs.append(run_engine(specs, ConstantCostModel(0.01, 0.0005), num_blocks=30, block_size=4,
                                   scheduler={"max_num_batched_tokens": 32}, preemption_name="swap", host_blocks=10,
                                   swap_block_s=0.001, async_scheduling=True))
    assert_same_results(*runs)
    assert sum(r.num_preemptions for r in runs[1].requests) > 0
