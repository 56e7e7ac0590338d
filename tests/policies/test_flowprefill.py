"""FlowPrefill: an urgent arrival stops a prefill at the next operator boundary, which later resumes."""
import pytest

from servesim.hwmodels import BatchShape, CostModel, IterationCost, OperatorTime
from servesim.sim.engine.request import Request
from tests.sim.engine_harness import run_engine

PER_TOKEN_S = 0.001
LAYERS = 10


class LayeredCostModel(CostModel):
    """`PER_TOKEN_S` per new token, spread evenly over `LAYERS` layers of one operator each."""

    def breakdown(self, batch: BatchShape) -> IterationCost:
        return IterationCost((OperatorTime("attn_qkv_proj", LAYERS, self.iteration_time(batch) / LAYERS),))

    def iteration_time(self, batch: BatchShape) -> float:
        return PER_TOKEN_S * batch.num_tokens

    def describe(self) -> dict:
        return {"kind": "layered test model"}


def approx(x):
    return pytest.approx(x, abs=1e-9)


def requests():
    slow = Request(0, 0.0, 1000, 2, ttft_deadline_s=100.0)
    urgent = Request(1, 0.25, 100, 2, ttft_deadline_s=0.6)
    return slow, urgent


def test_an_urgent_arrival_preempts_a_prefill_at_the_next_operator_boundary():
    slow, urgent = requests()
    run = run_engine([slow, urgent], LayeredCostModel(), scheduler_name="flowprefill")
    # The slow prompt's 1.0 s iteration has a boundary every 0.1 s: it stops at .3, not at .25.
    assert urgent.first_scheduled_s == approx(0.3)
    assert urgent.first_token_s == approx(0.4)
    # It resumes at .4 with .7 s of work left: nothing is recomputed.
    assert slow.first_token_s == approx(1.1)
    assert run.cluster.replicas[0].num_interrupts == 1


def test_without_operator_preemption_the_urgent_request_waits_for_the_whole_prefill():
    slow, urgent = requests()
    run_engine([slow, urgent], LayeredCostModel(), scheduler_name="edf", scheduler={"max_num_batched_tokens": 16384})
    assert urgent.first_scheduled_s == approx(1.0)
    assert urgent.first_token_s == approx(1.101)  # beside the slow request's first decode


def test_a_less_urgent_arrival_does_not_interrupt():
    slow = Request(0, 0.0, 1000, 2, ttft_deadline_s=1.5)
    relaxed = Request(1, 0.25, 100, 2, ttft_deadline_s=5.0)
    run = run_engine([slow, relaxed], LayeredCostModel(), scheduler_name="flowprefill")
    assert slow.first_token_s == approx(1.0)
    assert run.cluster.replicas[0].num_interrupts == 0


def test_priority_urgency_interrupts_for_a_more_important_class():
    slow = Request(0, 0.0, 1000, 2, priority=1)
    vip = Request(1, 0.55, 100, 2, priority=0)
    run_engine([slow, vip], LayeredCostModel(), scheduler_name="flowprefill", scheduler={"urgency": "priority"})
    assert vip.first_scheduled_s == approx(0.6)
    assert slow.first_token_s == approx(1.1)


def test_a_suspended_prefill_resumes_when_the_more_urgent_request_does_not_fit():
    # Found by fuzzing: the urgent head could not be admitted (no free blocks), nothing was
    # scheduled and nothing resumed, and the replica waited forever.
    from servesim.policies import create_policy
    from tests.policies.views import FakeIteration, FakeKv, FakeReplica, prefilling, waiting

    flow = create_policy("scheduler", "flowprefill", {}, preemption=create_policy("preemption", "recompute", {}))
    cut_short = FakeIteration(entries=[(prefilling(0, 900, 0, ttft_deadline_s=9.0), 900)])
    urgent = waiting(1, 800, 4, arrival_s=1.0, ttft_deadline_s=2.0)
    replica = FakeReplica(waiting=[urgent], suspended=[cut_short], kv=FakeKv(num_blocks=60, num_free_blocks=3))
    assert flow.schedule(replica, now=1.0).resume is cut_short
    roomy = FakeReplica(waiting=[urgent], suspended=[cut_short], kv=FakeKv(num_blocks=200, num_free_blocks=100))
    decision = flow.schedule(roomy, now=1.0)
    assert decision.resume is None and [r.request_id for r, _ in decision.scheduled] == [1]
