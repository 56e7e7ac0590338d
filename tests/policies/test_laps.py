"""LAPS: short prefills do not queue behind long ones, and are batched within a window."""
import pytest

from servesim.hwmodels import ConstantCostModel
from tests.sim.engine_harness import run_engine

STEP = 0.1


def approx(x):
    return pytest.approx(x, abs=1e-12)


def test_a_short_prefill_gets_its_own_iteration_between_chunks_of_a_long_one():
    specs = [(0.0, 2000, 2), (0.05, 50, 2)]
    laps = run_engine(specs, ConstantCostModel(STEP), scheduler_name="laps",
                      scheduler={"max_num_batched_tokens": 512, "window_s": 0.0})
    long, short = laps.requests
    assert short.first_scheduled_s == approx(0.1) and short.first_token_s == approx(0.2)
    # The long prompt's 4 chunks take one iteration more: the short batch ran alone.
    assert long.first_token_s == approx(0.5)
    fcfs = run_engine(specs, ConstantCostModel(STEP), scheduler={"max_num_batched_tokens": 512})
    assert fcfs.requests[1].first_token_s > 0.4  # behind the long prompt's chunks


def test_a_lone_short_prefill_waits_for_the_window_then_runs():
    run = run_engine([(0.0, 50, 2)], ConstantCostModel(STEP), scheduler_name="laps", scheduler={"window_s": 0.05})
    assert run.requests[0].first_scheduled_s == approx(0.05)


def test_a_full_short_batch_does_not_wait():
    run = run_engine([(0.0, 50, 2), (0.01, 60, 2)], ConstantCostModel(STEP), scheduler_name="laps",
                     scheduler={"window_s": 0.05, "short_batch": 2})
    a, b = run.requests
    assert a.first_scheduled_s == b.first_scheduled_s == approx(0.01)


def test_a_ready_short_batch_that_cannot_be_admitted_does_not_stall_the_running_prefill():
    # Found by fuzzing: with every sequence slot taken by a long prefill, ready shorts could not be
    # admitted and the prefill was left out of the iteration: nothing ran, forever.
    from servesim.policies import create_policy
    from tests.policies.views import FakeReplica, prefilling, waiting

    laps = create_policy("scheduler", "laps", {"max_num_seqs": 1, "window_s": 0.0, "max_num_batched_tokens": 64},
                         preemption=create_policy("preemption", "recompute", {}))
    replica = FakeReplica(running=[prefilling(0, 500, 128)], waiting=[waiting(1, 20, 2, arrival_s=1.0)])
    decision = laps.schedule(replica, now=2.0)
    assert [(r.request_id, n) for r, n in decision.scheduled] == [(0, 64)]
    assert decision.wake_at is None


def test_laps_runs_to_the_end_when_sequence_slots_are_scarce():
    specs = [(0.0, 300, 3), (0.01, 20, 2), (0.02, 400, 2), (0.03, 10, 4)]
    run = run_engine(specs, ConstantCostModel(STEP), scheduler_name="laps",
                     scheduler={"max_num_seqs": 1, "max_num_batched_tokens": 16, "window_s": 0.0, "short_batch": 1})
    assert all(r.num_generated == r.output_tokens for r in run.requests)
