"""Counterexamples where fast-forwarding a decode stretch once decided differently from stepping."""
from servesim.hwmodels import ConstantCostModel
from servesim.sim.engine.request import Request, RequestState
from tests.sim.engine_harness import run_engine


def stepped_and_jumped(specs, cost_model, **options):
    return [run_engine(specs() if callable(specs) else specs, cost_model, fast_forward=fast_forward, **options)
            for fast_forward in (False, True)]


def test_a_preemptive_scheduler_displaces_at_the_same_step_as_stepping():
    # SRPT preempts a running request for a better waiting one once that one needs more blocks
    # than are free; free blocks shrink as the running requests decode, so the stretch (planned
    # only around arrivals, finishes and the batch's own memory) ran past the displacement.
    specs = [(1.75, 1, 18), (2.0, 2, 15), (2.0, 45, 13)]
    stepped, jumped = stepped_and_jumped(
        specs, ConstantCostModel(0.0625, 0.0), num_blocks=22, block_size=4,
        scheduler={"max_num_seqs": 3, "max_num_batched_tokens": 55, "chunked_prefill": True},
        preemption={"victim": "largest"}, scheduler_name="srpt")
    assert [r.num_preemptions for r in stepped.requests] == [0, 1, 1]
    for a, b in zip(stepped.requests, jumped.requests, strict=True):
        assert a.num_preemptions == b.num_preemptions and abs(a.finish_s - b.finish_s) < 1e-9


def test_a_waiting_request_giving_up_ends_the_stretch():
    # The head of the FCFS queue does not fit and blocks a small request behind it; when the head
    # gives up, stepping admits the small one at once, so the stretch must stop at the timeout.
    def specs():
        return [Request(0, 0.0, 20, 30), Request(1, 0.1, 48, 5, timeout_at_s=0.5), Request(2, 0.2, 2, 5)]

    stepped, jumped = stepped_and_jumped(specs, ConstantCostModel(0.05, 0.0), num_blocks=16, block_size=4,
                                         scheduler={"max_num_batched_tokens": 64})
    assert stepped.requests[1].state is RequestState.DROPPED
    assert stepped.requests[2].first_scheduled_s < 0.6
    assert abs(jumped.requests[2].first_scheduled_s - stepped.requests[2].first_scheduled_s) < 1e-9
    for a, b in zip(stepped.requests, jumped.requests, strict=True):
        assert a.state is b.state and abs(a.finish_s - b.finish_s) < 1e-9


def test_a_preemptive_scheduler_still_fast_forwards_while_nothing_waits():
    specs = [(0.0, 8, 200), (0.0, 8, 150)]
    stepped, jumped = stepped_and_jumped(specs, ConstantCostModel(0.01), scheduler_name="srpt", block_size=4)
    assert jumped.cluster.replicas[0].num_engine_steps < stepped.cluster.replicas[0].num_engine_steps / 10
    for a, b in zip(stepped.requests, jumped.requests, strict=True):
        assert abs(a.finish_s - b.finish_s) < 1e-9
