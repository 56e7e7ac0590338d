"""Exact timelines on a constant-cost model: every time below follows from 0.1 s per iteration."""
import math

import numpy as np
import pytest

from servesim.hwmodels import ConstantCostModel
from servesim.sim.engine.request import RequestState
from tests.sim.engine_harness import run_engine

STEP = 0.1


def approx(x):
    return pytest.approx(x, abs=1e-12)


def test_chunked_prefill_then_decode_with_a_late_arrival_sharing_the_budget():
    run = run_engine(
        [(0.0, 8, 3), (0.05, 2, 2)],
        ConstantCostModel(STEP),
        block_size=4,
        scheduler={"max_num_batched_tokens": 4},
    )
    a, b = run.requests
    # A: chunks of 4 at [0, .1] and [.1, .2]; first token at .2, then one token per iteration.
    assert a.first_scheduled_s == 0.0
    assert a.first_token_s == approx(0.2)
    assert a.finish_s == approx(0.4)
    # B arrives at .05; the budget is all A's at .1; admitted at .2 beside A's decode.
    assert b.first_scheduled_s == approx(0.2)
    assert b.first_token_s == approx(0.3)
    assert b.finish_s == approx(0.4)
    assert [r.state for r in run.requests] == [RequestState.FINISHED] * 2
    assert run.end_s == approx(0.4)


def test_recompute_preemption_evicts_the_newest_and_replays_its_tokens():
    # 4 blocks of 2 tokens; each request holds 2 blocks after prefill and needs a third at t=.2.
    run = run_engine([(0.0, 3, 3), (0.0, 3, 3)], ConstantCostModel(STEP), num_blocks=4, block_size=2)
    a, b = run.requests
    assert a.num_preemptions == 0 and a.finish_s == approx(0.3)
    assert b.num_preemptions == 1
    assert b.first_token_s == approx(0.1)
    # B re-prefills prompt + 2 generated tokens at [.3, .4] and samples its last token.
    assert b.finish_s == approx(0.4)
    assert b.max_tbt_s == approx(0.2)
    gaps, weights = run.metrics.token_gaps()
    assert sorted(np.repeat(gaps, weights.astype(int)).round(12).tolist()) == [0.1, 0.1, 0.1, 0.2]


def test_request_longer_than_the_context_or_the_memory_is_rejected_with_a_reason():
    run = run_engine(
        [(0.0, 100, 10), (0.0, 10, 200), (0.0, 10, 10)],
        ConstantCostModel(STEP),
        num_blocks=5,
        block_size=16,
        max_model_len=150,
    )
    too_big, too_long, ok = run.requests
    assert too_big.state is RequestState.REJECTED
    assert too_big.reject_reason == "needs 7 KV blocks (109 tokens) but the replica has 5"
    assert too_long.state is RequestState.REJECTED
    assert too_long.reject_reason == "prompt + output = 210 tokens exceeds max_model_len 150"
    assert ok.state is RequestState.FINISHED


def test_prompt_larger_than_budget_without_chunking_is_rejected():
    run = run_engine(
        [(0.0, 300, 10)], ConstantCostModel(STEP), scheduler={"max_num_batched_tokens": 256, "chunked_prefill": False}
    )
    assert run.requests[0].state is RequestState.REJECTED
    assert "chunked_prefill is off" in run.requests[0].reject_reason


def test_without_chunking_a_prompt_waits_for_a_whole_budget():
    run = run_engine(
        [(0.0, 10, 5), (0.0, 10, 5)], ConstantCostModel(STEP),
        scheduler={"max_num_batched_tokens": 15, "chunked_prefill": False},
    )
    a, b = run.requests
    assert a.first_token_s == approx(0.1)
    # At t=.1 A decodes 1 token, leaving 14 >= 10: B's whole prompt goes in.
    assert b.first_scheduled_s == approx(0.1)
    assert b.first_token_s == approx(0.2)


def test_max_num_seqs_one_serves_requests_one_after_another():
    run = run_engine([(0.0, 4, 3), (0.0, 4, 3)], ConstantCostModel(STEP), scheduler={"max_num_seqs": 1})
    a, b = run.requests
    assert a.finish_s == approx(0.3)
    assert b.first_scheduled_s == approx(0.3)
    assert b.finish_s == approx(0.6)


def test_round_robin_spreads_requests_over_replicas():
    run = run_engine([(0.0, 4, 2)] * 4, ConstantCostModel(STEP), replicas=2)
    assert [r.replica_id for r in run.requests] == [0, 1, 0, 1]
    assert all(r.finish_s == approx(0.2) for r in run.requests)


def test_single_output_token_has_no_tbt():
    run = run_engine([(0.0, 4, 1)], ConstantCostModel(STEP))
    request = run.requests[0]
    assert request.first_token_s == request.finish_s == approx(0.1)
    gaps, _ = run.metrics.token_gaps()
    assert len(gaps) == 0 and not math.isnan(request.max_tbt_s)
