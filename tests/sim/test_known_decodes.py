"""A trusted scheduler's decision after a decode-only step is known when nothing waits: the
stretch runs on through finishes without asking it, and nothing else changes.

The property tests ask the scheduler (on views, checked) at every step taken without it and
find the same batch, and compare runs with and without these steps to the bit: every request's
times, the token gaps in order, the per-iteration records and the replica time series.
"""
from __future__ import annotations

import math
from unittest.mock import patch

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.hwmodels import ConstantCostModel
from servesim.policies import create_policy
from servesim.policies.views import is_decode
from servesim.sim.engine import replica as replica_module
from servesim.sim.engine import trusted
from servesim.sim.engine.bookkeeping import checked_schedule
from servesim.sim.engine.decision_check import DecisionChecker
from tests.builds import interpreted_only
from tests.sim.engine_harness import EngineRun, run_engine
from tests.sim.test_engine_properties import build_requests, requests_with_prefixes

pytestmark = interpreted_only  # `run_both` switches the known steps off by patching the replica's module

REQUEST_FIELDS = ("state", "replica_id", "num_preemptions", "num_swaps", "num_cached_tokens", "num_generated",
                  "picked_up_s", "first_scheduled_s", "first_token_s", "finish_s", "last_token_s", "max_tbt_s")


def assert_identical(a: EngineRun, b: EngineRun) -> None:
    """Bit-for-bit the same run, engine steps aside."""
    for x, y in zip(a.requests, b.requests, strict=True):
        for field in REQUEST_FIELDS:
            u, v = getattr(x, field), getattr(y, field)
            assert u == v or (isinstance(u, float) and math.isnan(u) and math.isnan(v)), (x, field, u, v)
    assert pooled_gaps(a) == pooled_gaps(b)
    pd.testing.assert_frame_equal(a.metrics.replica_series(), b.metrics.replica_series(), check_exact=True)
    pd.testing.assert_frame_equal(a.metrics.iterations(), b.metrics.iterations(), check_exact=True)
    assert a.end_s == b.end_s
    assert ([r.num_iterations for r in a.cluster.replicas] == [r.num_iterations for r in b.cluster.replicas])


def pooled_gaps(run: EngineRun) -> list[float]:
    """Every token gap, each as often as seen, in order of value: a step taken without a decision
    pools its gaps when its tokens are applied, which with several replicas may come after the
    steps of another replica (the same gaps, pooled in another order)."""
    values, weights = run.metrics.token_gaps()
    return sorted(value for value, weight in zip(values.tolist(), weights.tolist(), strict=True)
                  for _ in range(int(weight)))


def run_both(specs, **options) -> tuple[EngineRun, EngineRun]:
    """The run with every decision asked, and with the known ones taken without the scheduler
    (a prompt's known chunks too: `sim.engine.prompt_chunks`)."""
    runs = []
    for known in (False, True):
        with (patch.object(replica_module, "known_next_batch", lambda scheduler, replica, known=known:
                           trusted.known_next_batch(scheduler, replica) if known else None),
              patch.object(replica_module, "known_prompt_chunk", lambda scheduler, replica, known=known:
                           trusted.known_prompt_chunk(scheduler, replica) if known else None)):
            made = build_requests(specs) if len(specs[0]) == 5 else specs  # 3-tuples: the harness makes them
            runs.append(run_engine(made, record_iterations=True, **options))
    return runs[0], runs[1]


def steps(run: EngineRun) -> int:
    return sum(r.num_engine_steps for r in run.cluster.replicas)


def staggered_finishes() -> list[tuple[float, int, int]]:
    # Four prompts admitted together, finishing one after another; nothing arrives later.
    return [(0.0, 8, 10), (0.0, 8, 20), (0.0, 8, 30), (0.0, 8, 40)]


@pytest.mark.parametrize("scheduler_name", ["vllm", "sarathi"])
@pytest.mark.parametrize("async_scheduling", [False, True])
def test_a_stretch_runs_on_through_finishes_without_deciding(scheduler_name, async_scheduling):
    asked, known = run_both(staggered_finishes(), cost_model=ConstantCostModel(0.01, 0.001),
                            scheduler_name=scheduler_name, async_scheduling=async_scheduling)
    assert_identical(asked, known)
    assert steps(asked) == 5  # the prompts, then a stretch up to each of the four finishes
    assert steps(known) == 1  # the prompts; their first decodes and a stretch through every finish are known
    assert [r.finish_s for r in known.requests] == sorted(r.finish_s for r in known.requests)


def test_each_finish_still_leaves_a_row_in_the_time_series():
    _, known = run_both(staggered_finishes(), cost_model=ConstantCostModel(0.01, 0.001))
    series = known.metrics.replica_series()
    assert series["num_running"].tolist() == [4, 4, 3, 2, 1]
    assert series["batch_size"].tolist() == [4, 4, 3, 2, 1]


@pytest.mark.parametrize(("why", "options", "extra", "saved"), [
    # Two wait for a slot and are decided in at the first two finishes; the step after the
    # prompts and the next two finishes need no decision, and the last leaves nothing to run.
    ("requests wait for a sequence slot", {"scheduler": {"max_num_seqs": 3}}, [(0.0, 8, 5)], 3),
    # Its arrival cuts the stretch and it is admitted at once: only the two admissions are
    # decided (the steps after each, and the five finishes but the last, are known).
    ("an arrival comes during the stretch", {}, [(0.05, 8, 5)], 6),
    ("the router reads progress", {"progress_observed": True}, [], 0),
    ("the scheduler is not trusted", {"scheduler_name": "orca"}, [], 0),
])
def test_a_finish_ends_the_stretch_when_the_decision_is_not_known(why, options, extra, saved):
    specs = sorted(staggered_finishes() + extra, key=lambda spec: spec[0])
    asked, known = run_both(specs, cost_model=ConstantCostModel(0.01, 0.001), **options)
    assert_identical(asked, known)
    assert steps(asked) - steps(known) == saved, why


def test_a_step_whose_blocks_do_not_fit_is_decided():
    # Two long requests in a pool that cannot hold both to the end: the scheduler must preempt.
    specs = [(0.0, 4, 3), (0.0, 4, 60), (0.0, 4, 60)]
    asked, known = run_both(specs, cost_model=ConstantCostModel(0.01, 0.001), num_blocks=24, block_size=4)
    assert_identical(asked, known)
    assert sum(r.num_preemptions for r in known.requests) > 0


def _counting_later_chunks(original):
    """`run_prompt_chunks`, counting on the replica the steps it takes after the first (which was
    decided or known): none of them is decided."""

    def run_prompt_chunks(replica, step):
        done = yield from original(replica, step)
        replica.test_chunk_steps = getattr(replica, "test_chunk_steps", 0) + max(done - 1, 0)
        return done

    return run_prompt_chunks


def _asking_too(original):
    """`Replica._known_step`, after asking the scheduler on views: a known step must be its decision."""

    def known_step(replica, all_decode=False):
        scheduler = replica.scheduler
        if all_decode:  # the caller's promise that `_known_decodes` rests on
            assert all(is_decode(r) and r.num_tokens - r.num_computed_tokens == 1 for r in replica.running)
        decision = checked_schedule(scheduler, replica.view, DecisionChecker(replica, scheduler), replica.env.now)
        step = original(replica, all_decode)
        if step is not None and all_decode:
            replica.test_decode_steps = getattr(replica, "test_decode_steps", 0) + 1
        if step is not None:
            assert [(id(r), n) for r, n in step.entries] == [(id(r), n) for r, n in decision.entries]
            assert (decision.preempted, decision.padding, decision.wake_at, decision.resume) == ([], [], None, None)
            assert step.shape.context_lens == tuple(r.num_computed_tokens for r, _ in step.entries)
            replica.test_known_steps = getattr(replica, "test_known_steps", 0) + 1
        return step

    return known_step


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests_with_prefixes,
    st.sampled_from([("vllm", {}), ("vllm", {"reserve_full_isl": False}), ("vllm", {"preemptive": True}),
                     ("sarathi", {})]),
    st.fixed_dictionaries({
        "num_blocks": st.integers(6, 60),
        "block_size": st.sampled_from([1, 2, 4, 8]),
        "replicas": st.integers(1, 3),
        "async_scheduling": st.booleans(),
        "prefix_caching": st.booleans(),
        "preemption_name": st.sampled_from(["recompute", "swap"]),
        "host_blocks": st.integers(0, 30),
    }),
    st.integers(1, 8), st.integers(8, 64),
    st.builds(ConstantCostModel, st.floats(0.001, 0.1), st.floats(0, 0.002)),
)
def test_known_steps_are_the_scheduler_decisions_and_change_nothing(specs, scheduler, options, max_seqs, max_tokens,
                                                                    cost_model):
    name, params = scheduler
    params = {**params, "max_num_seqs": max_seqs, "max_num_batched_tokens": max(max_tokens, max_seqs)}
    with (patch.object(replica_module.Replica, "_known_step", _asking_too(replica_module.Replica._known_step)),
          patch.object(replica_module, "run_prompt_chunks", _counting_later_chunks(replica_module.run_prompt_chunks))):
        asked, known = run_both(specs, cost_model=cost_model, scheduler_name=name, scheduler=params,
                                swap_block_s=0.002, progress_observed=False, **options)
    assert_identical(asked, known)
    known_steps = sum(getattr(r, "test_known_steps", 0) + getattr(r, "test_chunk_steps", 0)
                      for r in known.cluster.replicas)
    assert steps(asked) - steps(known) == known_steps


def test_the_property_run_takes_known_steps():
    # The random runs above would prove nothing if no step were ever taken without a decision.
    with patch.object(replica_module.Replica, "_known_step", _asking_too(replica_module.Replica._known_step)):
        asked, known = run_both([(0.1 * i, 5 + i, 4 + 3 * i) for i in range(8)], cost_model=ConstantCostModel(0.01),
                                scheduler={"max_num_seqs": 4}, async_scheduling=True)
    assert_identical(asked, known)
    assert sum(getattr(r, "test_known_steps", 0) for r in known.cluster.replicas) >= 3
    assert sum(getattr(r, "test_decode_steps", 0) for r in known.cluster.replicas) >= 1


def test_only_the_trusted_schedulers_know_their_next_batch():
    recompute = create_policy("preemption", "recompute", {})
    for name in ("vllm", "sarathi"):
        assert trusted.known_next_batch(create_policy("scheduler", name, {}, preemption=recompute), None) is not None
    for name in ("orca", "batchllm", "past_future", "laps", "sjf"):
        policy = create_policy("scheduler", name, {}, preemption=recompute)
        assert trusted.known_next_batch(policy, None) is None, name


@pytest.mark.parametrize("scheduler_name", ["vllm", "sarathi"])
def test_a_prompts_later_chunks_beside_decodes_need_no_decision(scheduler_name):
    # Two decode while a 40-token prompt arrives; a budget of 12 gives it 10 tokens a step.
    specs = [(0.0, 4, 30), (0.0, 4, 30), (0.05, 40, 5)]
    asked, known = run_both(specs, cost_model=ConstantCostModel(0.01, 0.001), scheduler_name=scheduler_name,
                            scheduler={"max_num_batched_tokens": 12, "max_num_seqs": 4})
    assert_identical(asked, known)
    chunks = known.metrics.iterations().query("num_prefill_tokens > 0 and num_decodes > 0")
    assert chunks["num_prefill_tokens"].tolist() == [10, 10, 10, 10]
    assert steps(known) == 2  # the two admissions



def test_an_arrival_staged_during_a_known_step_is_promoted_as_a_decision_would():
    # Asynchronous scheduling: the third request arrives during a known step of the second's
    # prompt chunks, so the next step was planned without it. That step is known all the same
    # (it promotes the arrival). Decided: the three admissions, and one step while the third
    # waits for the budget the second's chunks take.
    specs = [(0.0, 4, 30), (0.005, 40, 5), (0.035, 8, 5)]
    asked, known = run_both(specs, cost_model=ConstantCostModel(0.01, 0.001), async_scheduling=True,
                            scheduler={"max_num_batched_tokens": 12, "max_num_seqs": 4})
    assert_identical(asked, known)
    assert known.requests[2].picked_up_s > specs[2][0]  # it waited for the step's end
    assert steps(known) == 4
