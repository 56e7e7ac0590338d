"""The behaviour that defines each budget scheduler, as exact timelines on a constant-cost model."""
import pytest

from servesim.hwmodels import ConstantCostModel
from servesim.sim.engine.request import Request
from tests.sim.engine_harness import run_engine

STEP = 0.1


def approx(x):
    return pytest.approx(x, abs=1e-12)


def test_vllm_prefill_first_pauses_decodes_while_a_prompt_runs():
    specs = [(0.0, 4, 5), (0.15, 4, 2)]
    stalled = run_engine(specs, ConstantCostModel(STEP),
                         scheduler={"prefill_first": True, "chunked_prefill": False})
    a, b = stalled.requests
    # At .2 B's prompt runs alone; A's next token comes at .4 instead of .3.
    assert b.first_scheduled_s == approx(0.2) and b.first_token_s == approx(0.3)
    assert a.max_tbt_s == approx(0.2)
    unified = run_engine(specs, ConstantCostModel(STEP))
    assert unified.requests[0].max_tbt_s == approx(STEP)


def test_sarathi_never_leaves_a_decode_out_for_a_prefill():
    specs = [(0.0, 4, 12), (0.05, 100, 2), (0.25, 60, 2)]
    run = run_engine(specs, ConstantCostModel(STEP), scheduler_name="sarathi",
                     scheduler={"max_num_batched_tokens": 8, "max_num_seqs": 8})
    a, b, c = run.requests
    assert a.max_tbt_s == approx(STEP)  # one token every iteration while 160 prompt tokens go by
    # B's prompt goes 7 tokens an iteration beside A's 11 decodes (77 tokens by 1.2), then 8, 8, 7.
    assert b.first_token_s == approx(1.5)
    prefill_first = run_engine(specs, ConstantCostModel(STEP),
                               scheduler={"prefill_first": True, "chunked_prefill": False,
                                          "max_num_batched_tokens": 128})
    assert prefill_first.requests[0].max_tbt_s > STEP


def test_sarathi_rejects_a_budget_smaller_than_its_sequences():
    from servesim.policies import PolicyError, validate_params

    with pytest.raises(PolicyError, match="must not exceed max_num_batched_tokens"):
        validate_params("scheduler", "sarathi", {"max_num_seqs": 64, "max_num_batched_tokens": 32})


def test_orca_reserves_whole_requests_and_never_preempts():
    # 10 blocks of 4 tokens; each request reserves blocks for 8 + 8 - 1 tokens = 4 blocks.
    specs = [(0.0, 8, 8)] * 3
    orca = run_engine(specs, ConstantCostModel(STEP), num_blocks=10, block_size=4, scheduler_name="orca")
    first, second, third = orca.requests
    assert first.first_scheduled_s == second.first_scheduled_s == 0.0
    assert third.first_scheduled_s == approx(first.finish_s)
    assert sum(r.num_preemptions for r in orca.requests) == 0
    paged = run_engine(specs, ConstantCostModel(STEP), num_blocks=10, block_size=4)
    assert paged.requests[2].first_scheduled_s == 0.0  # vLLM admits on current blocks ...
    assert sum(r.num_preemptions for r in paged.requests) > 0  # ... and preempts later


def test_priority_preempts_a_less_important_running_request():
    low = Request(0, 0.0, 4, 20, priority=1)
    high = Request(1, 0.35, 4, 2, priority=0)
    run_engine([low, high], ConstantCostModel(STEP), scheduler_name="priority", scheduler={"max_num_seqs": 1})
    # At .4 the high-priority request displaces the low one (a step that only preempts takes no time).
    assert high.first_scheduled_s == approx(0.4) and high.finish_s == approx(0.6)
    assert low.num_preemptions == 1
    low2 = Request(0, 0.0, 4, 20, priority=1)
    high2 = Request(1, 0.35, 4, 2, priority=0)
    run_engine([low2, high2], ConstantCostModel(STEP), scheduler_name="priority",
               scheduler={"max_num_seqs": 1, "preemptive": False})
    assert high2.first_scheduled_s == approx(low2.finish_s) and low2.num_preemptions == 0


def test_preemptive_fcfs_lets_the_older_request_displace_the_newer_and_both_finish():
    # Found by fuzzing: at .2 memory runs out and the `largest` victim order preempts the older
    # request A, whose earlier arrival then displaces B. FCFS's queue order (preempted first) put
    # B back in ahead of A; B took A's room with a 4-token chunk of its 5 tokens, was displaced
    # again, and the two traded places forever. Admitted in key order, A goes first.
    def run(preemptive):
        specs = [(0.0, 3, 3), (0.01, 3, 3)]
        return run_engine(specs, ConstantCostModel(STEP), num_blocks=7, block_size=1,
                          scheduler={"max_num_seqs": 2, "max_num_batched_tokens": 4, "preemptive": preemptive},
                          preemption={"victim": "largest"}).requests

    a, b = run(preemptive=True)
    assert a.num_preemptions == 1 and b.num_preemptions == 1
    assert a.finish_s == approx(0.4) and b.finish_s == approx(0.6)
    a_kept_waiting, b_ran_on = run(preemptive=False)
    assert b_ran_on.num_preemptions == 0 and b_ran_on.finish_s < a_kept_waiting.finish_s


def test_edf_admits_the_earliest_ttft_deadline_first():
    late = Request(0, 0.0, 4, 2, ttft_deadline_s=10.0)
    urgent = Request(1, 0.0, 4, 2, ttft_deadline_s=1.0)
    run_engine([late, urgent], ConstantCostModel(STEP), scheduler_name="edf", scheduler={"max_num_seqs": 1})
    assert urgent.first_scheduled_s == 0.0 and late.first_scheduled_s == approx(urgent.finish_s)


def test_sjf_runs_the_shortest_predicted_output_first():
    long, short = Request(0, 0.0, 4, 10), Request(1, 0.0, 4, 2)
    run_engine([long, short], ConstantCostModel(STEP), scheduler_name="sjf", scheduler={"max_num_seqs": 1})
    assert short.first_scheduled_s == 0.0 and long.first_scheduled_s == approx(0.2)


def test_srpt_preempts_the_longest_remaining_for_a_shorter_arrival():
    long, short = Request(0, 0.0, 4, 20), Request(1, 0.35, 4, 2)
    run_engine([long, short], ConstantCostModel(STEP), scheduler_name="srpt", scheduler={"max_num_seqs": 1})
    assert short.first_scheduled_s == approx(0.4) and long.num_preemptions == 1
    fcfs_long, fcfs_short = Request(0, 0.0, 4, 20), Request(1, 0.35, 4, 2)
    run_engine([fcfs_long, fcfs_short], ConstantCostModel(STEP), scheduler={"max_num_seqs": 1})
    assert fcfs_short.first_scheduled_s == approx(fcfs_long.finish_s)


def test_static_batches_pad_prompts_and_admit_nobody_mid_batch():
    cost = ConstantCostModel(STEP, per_token_s=0.001)
    run = run_engine([(0.0, 10, 5), (0.0, 2, 1), (0.05, 3, 1)], cost, scheduler_name="static",
                     scheduler={"batch_size": 2})
    a, b, c = run.requests
    # Prefill: 10 + 2 tokens padded to 2 x 10 = 20 tokens.
    assert a.first_token_s == b.finish_s == approx(0.1 + 20 * 0.001)
    # B's slot stays in the batch as padding while A decodes 4 more tokens: 2 tokens an iteration.
    assert a.finish_s == approx(0.12 + 4 * (0.1 + 2 * 0.001))
    assert c.first_scheduled_s == approx(a.finish_s)


def test_static_waits_up_to_max_wait_for_a_full_batch():
    run = run_engine([(0.0, 4, 1), (0.3, 4, 1)], ConstantCostModel(STEP), scheduler_name="static",
                     scheduler={"batch_size": 2, "max_wait_s": 0.5})
    a, b = run.requests
    assert a.first_scheduled_s == b.first_scheduled_s == approx(0.3)
    alone = run_engine([(0.0, 4, 1)], ConstantCostModel(STEP), scheduler_name="static",
                       scheduler={"batch_size": 2, "max_wait_s": 0.5})
    assert alone.requests[0].first_scheduled_s == approx(0.5)


def test_vllm_admits_a_chunked_prompt_only_when_its_whole_sequence_fits():
    """vLLM 0.19's scheduler_reserve_full_isl: B's 32-token prompt (8 blocks of 4) waits while A holds
    3 of the 10 blocks, though its first 8-token chunk would fit; without the reserve B starts at once."""
    specs = [(0.0, 8, 16), (0.05, 32, 2)]
    options = {"max_num_batched_tokens": 8, "max_num_seqs": 4}
    reserved = run_engine(specs, ConstantCostModel(STEP), num_blocks=10, block_size=4, scheduler=options)
    a, b = reserved.requests
    assert b.first_scheduled_s >= a.finish_s
    eager = run_engine(specs, ConstantCostModel(STEP), num_blocks=10, block_size=4,
                       scheduler={**options, "reserve_full_isl": False})
    a, b = eager.requests
    assert b.first_scheduled_s < a.finish_s and b.first_scheduled_s == approx(0.1)
