"""Data-parallel lockstep: a step lasts as long as the slowest rank's, idle ranks run dummy
batches, batches are padded to the largest rank's tokens, and the experts see every rank's tokens."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, ConstantCostModel, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.expert_parallel import DataParallelExpertCostModel
from servesim.sim.engine.dp_group import DP_SYNC_S, DUMMY_BATCH, LockstepPricing, RankPlan, padded_to
from servesim.sim.engine.overheads import EngineOverheadCostModel
from servesim.sim.engine.request import Request, RequestState
from tests.sim.engine_harness import run_engine

COST = ConstantCostModel(0.01, 0.001)


def decodes(count: int, context: int = 50) -> BatchShape:
    return BatchShape((1,) * count, (context,) * count)


def test_a_step_lasts_as_long_as_the_slowest_rank_plus_the_dp_sync() -> None:
    pricing = LockstepPricing(COST)
    prefill, few = RankPlan(BatchShape((100,), (0,))), RankPlan(decodes(5), swap_s=0.002)
    assert pricing.step_s([prefill, few]) == pytest.approx(0.01 + 0.100 + DP_SYNC_S)
    assert pricing.step_s([RankPlan(decodes(5), swap_s=0.5), prefill]) == pytest.approx(0.5 + 0.015 + DP_SYNC_S)


def test_an_idle_rank_runs_a_dummy_batch_of_one_token() -> None:
    pricing = LockstepPricing(COST)
    assert pricing.rank_shapes([None, RankPlan(decodes(3))]) == [DUMMY_BATCH, decodes(3)]
    assert pricing.step_s([None, None]) == pytest.approx(0.011 + DP_SYNC_S)


def test_batches_are_padded_to_the_largest_rank_only_when_every_rank_fits_a_cuda_graph() -> None:
    pricing = LockstepPricing(EngineOverheadCostModel(COST, capture_sizes=(1, 2, 4, 8)))
    small, mixed = decodes(3, context=70), BatchShape((5, 1), (0, 20))
    assert pricing.rank_shapes([RankPlan(small), RankPlan(mixed), None]) == [
        padded_to(small, 6), mixed, padded_to(DUMMY_BATCH, 6)]
    assert padded_to(small, 6) == BatchShape((1,) * 6, (70,) * 6)
    large = BatchShape((9,), (0,))  # above the largest graph: every rank runs eager, unpadded
    assert pricing.rank_shapes([RankPlan(small), RankPlan(large)]) == [small, large]
    # 3 decodes padded to the other rank's 5 run as the 8-token graph: 0.01 + 8 x 0.001
    assert pricing.step_s([RankPlan(small), RankPlan(decodes(5))]) == pytest.approx(0.018 + DP_SYNC_S)
    assert pricing.step_s([RankPlan(small), RankPlan(decodes(1))]) == pytest.approx(0.014 + DP_SYNC_S)
    assert LockstepPricing(COST).rank_shapes([RankPlan(small), RankPlan(mixed)]) == [small, mixed]


def test_when_one_rank_runs_without_a_full_graph_every_rank_pays_the_eager_host_time() -> None:
    """The ranks agree on the lowest CUDA-graph mode (`coordinate_batch_across_dp`): a prefill on
    one rank makes the other rank's decodes launch layer by layer too."""
    pricing = LockstepPricing(EngineOverheadCostModel(COST, capture_sizes=(1, 2, 4, 8), per_eager_iteration_s=0.05))
    assert pricing.step_s([RankPlan(decodes(3)), RankPlan(decodes(5))]) == pytest.approx(0.018 + DP_SYNC_S)
    small_prefill = RankPlan(BatchShape((2,), (0,)))  # both ranks padded to 8 tokens, both launched eager
    assert pricing.step_s([RankPlan(decodes(8)), small_prefill]) == pytest.approx(0.018 + 0.05 + DP_SYNC_S)
    large = RankPlan(BatchShape((100,), (0,)))
    assert pricing.step_s([RankPlan(decodes(5)), large]) == pytest.approx(0.110 + 0.05 + DP_SYNC_S)
    # the decode rank, slowed by a swap, is the slowest and pays the eager time beside the prefill
    slow_decodes = RankPlan(decodes(8), swap_s=0.1)
    assert pricing.step_s([slow_decodes, RankPlan(BatchShape((9,), (0,)))]) == pytest.approx(
        0.118 + 0.05 + DP_SYNC_S)


def test_the_experts_see_the_tokens_every_rank_gathered() -> None:
    """Unpadded (no graphs): a 600-token rank beside an idle one gathers 601 tokens, not 2 x 600."""
    model = load_model("qwen3-30b-a3b")
    gpu = load_hardware("h100-sxm")
    split = DataParallelExpertCostModel(RooflineCostModel(model, gpu, ParallelPlan(tp=1)),
                                        RooflineCostModel(model, gpu, ParallelPlan(tp=2, ep=2)), 2, 2,
                                        model.experts_per_token)
    prefill = BatchShape((600,), (0,))
    expected = split.iteration_time(prefill) + split.regathered_s(600, 601, 1200)
    assert LockstepPricing(split).step_s([RankPlan(prefill), None]) == pytest.approx(expected + DP_SYNC_S)
    assert expected < split.iteration_time(prefill)
    balanced = LockstepPricing(split).step_s([RankPlan(prefill), RankPlan(BatchShape((600,), (5,)))])
    assert balanced >= split.iteration_time(prefill) + DP_SYNC_S


def test_unequal_ranks_exchange_the_largest_ranks_tokens_through_the_smallest_ranks_link() -> None:
    """A 2,048-token prefill beside 100 decodes: the experts run for the 2,148 gathered tokens, but
    the all-gather and reduce-scatter last as long as for equal shares of 4,096 (the 2,048 tokens
    cross the decoding rank's link), longer than the ring of 2,148 would take."""
    model = load_model("qwen3-30b-a3b")
    gpu = load_hardware("rtx-pro-6000").with_link(16.0, 20.0)
    split = DataParallelExpertCostModel(RooflineCostModel(model, gpu, ParallelPlan(tp=1)),
                                        RooflineCostModel(model, gpu, ParallelPlan(tp=2, ep=2)), 2, 2,
                                        model.experts_per_token)
    prefill, few = BatchShape((2048,), (0,)), decodes(100, context=600)
    step = LockstepPricing(split).step_s([RankPlan(prefill), RankPlan(few)])
    exchanged = split.iteration_time(prefill) + split.regathered_s(2048, 2148, 4096)
    assert step == pytest.approx(max(exchanged, split.iteration_time(few) + split.regathered_s(100, 2148, 4096))
                                 + DP_SYNC_S)
    assert step > split.iteration_time(prefill) + split.regathered_s(2048, 2148, 2148) + DP_SYNC_S


def test_a_rank_woken_during_a_step_joins_at_its_end_and_idle_ranks_run_dummy_steps() -> None:
    """Request 0 runs alone on rank 0 (prefill, then two decodes); request 1 reaches rank 1
    during the second step and starts at the step boundary, not on arrival."""
    step = 0.01 + DP_SYNC_S
    run = run_engine([(0.0, 10, 3), (0.015, 10, 2)], ConstantCostModel(0.01), replicas=2, lockstep=True,
                     record_iterations=True)
    first, second = run.requests
    assert (first.replica_id, second.replica_id) == (0, 1)
    assert first.first_token_s == pytest.approx(step) and first.finish_s == pytest.approx(3 * step)
    assert second.first_scheduled_s == pytest.approx(2 * step)
    assert second.first_token_s == pytest.approx(3 * step) and second.finish_s == pytest.approx(4 * step)
    assert run.lockstep is not None
    assert run.lockstep.describe() == {"ranks": 2, "steps": 4, "dummy_rank_steps": 3}


def test_without_lockstep_the_same_ranks_step_independently() -> None:
    run = run_engine([(0.0, 10, 3), (0.015, 10, 2)], ConstantCostModel(0.01), replicas=2)
    assert run.requests[1].first_token_s == pytest.approx(0.025) and run.lockstep is None


def test_fast_forward_is_off_for_a_lockstep_group() -> None:
    run = run_engine([(0.0, 5, 40), (0.0, 5, 40)], ConstantCostModel(0.01), replicas=2, lockstep=True)
    assert all(not replica.fast_forward for replica in run.cluster.replicas)
    assert run.lockstep is not None and run.lockstep.num_steps == 40
    assert run.end_s == pytest.approx(40 * (0.01 + DP_SYNC_S))


workloads = st.lists(
    st.tuples(st.floats(0, 1.0, allow_nan=False), st.integers(1, 60), st.integers(1, 30)), min_size=1, max_size=25,
).map(lambda specs: sorted(specs, key=lambda s: s[0]))
engine_settings = st.fixed_dictionaries({
    "num_blocks": st.integers(4, 40),
    "block_size": st.sampled_from([1, 4, 16]),
    "scheduler": st.fixed_dictionaries({"max_num_seqs": st.integers(1, 8),
                                        "max_num_batched_tokens": st.integers(1, 64)}),
    "replicas": st.integers(2, 3),
    "router": st.sampled_from(["round_robin", "least_outstanding"]),
})


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(workloads, engine_settings, st.floats(0.001, 0.05), st.floats(0, 0.001), st.booleans())
def test_lockstep_loses_no_request_conserves_blocks_and_aligns_every_step(specs, options, fixed_s, per_token_s,
                                                                          async_scheduling):
    cost = ConstantCostModel(fixed_s, per_token_s)
    options = {**options, "async_scheduling": async_scheduling}
    run = run_engine(specs, cost, lockstep=True, record_iterations=True, **options)
    for request in run.requests:
        assert request.state in (RequestState.FINISHED, RequestState.REJECTED)
        if request.state is RequestState.FINISHED:
            assert request.num_generated == request.output_tokens
    for replica in run.cluster.replicas:
        replica.kv.check_conservation()
        assert replica.kv.num_used_blocks == 0
    steps = run.metrics.iterations()
    intervals = sorted(set(zip(steps["start_s"], steps["end_s"], strict=True)))
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert start >= end - 1e-12  # ranks' steps coincide or follow one another, never overlap
    again = run_engine(specs, cost, lockstep=True, record_iterations=True, **options)
    assert [r.finish_s for r in again.requests] == [r.finish_s for r in run.requests]


def test_a_scheduler_that_interrupts_iterations_runs_whole_steps_in_a_lockstep_group() -> None:
    """No rank can leave a lockstep step early, so FlowPrefill never interrupts: the urgent arrival
    goes to idle rank 1 (running dummy batches beside rank 0's 1 s prefill) and starts at that step's end."""
    slow = Request(0, 0.0, 1000, 2, ttft_deadline_s=100.0)
    urgent = Request(1, 0.25, 100, 2, ttft_deadline_s=0.6)
    run = run_engine([slow, urgent], ConstantCostModel(0.0, 0.001), scheduler_name="flowprefill", replicas=2,
                     router="least_outstanding", lockstep=True)
    assert run.cluster.replicas[0].num_interrupts == 0
    assert slow.first_token_s == pytest.approx(1.0 + DP_SYNC_S)
    assert urgent.replica_id == 1 and urgent.first_scheduled_s == pytest.approx(1.0 + DP_SYNC_S)
