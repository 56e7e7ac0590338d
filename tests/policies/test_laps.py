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
