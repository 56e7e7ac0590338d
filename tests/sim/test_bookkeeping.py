"""The bookkeeping both engines share (simulator replica and reference engine)."""
from __future__ import annotations

import math
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.policies import PreemptionMode, create_policy
from servesim.policies.contract import PolicyContractError
from servesim.policies.views import blocks_short, new_blocks_needed
from servesim.sim.engine.bookkeeping import (
    admit,
    allocate,
    arrival_rejection,
    preempt,
    record_decoded,
    record_sampled,
    rejection_reason,
    retire,
)
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.request import Request, RequestState
from servesim.sim.engine.views import RequestView

SCHEDULER = create_policy("scheduler", "vllm", {}, preemption=create_policy("preemption", "recompute", {}))


def test_a_request_is_rejected_when_too_long_or_larger_than_the_pool():
    kv = BlockPool(4, 16)
    assert rejection_reason(40, 25, 100, kv) == ""  # 64 tokens of KV fill the 4 blocks exactly
    assert "needs 5 KV blocks (65 tokens)" in rejection_reason(40, 26, 100, kv)
    assert "exceeds max_model_len 60" in rejection_reason(40, 21, 60, kv)


class Refusing:
    """A scheduler whose admission rule is its own."""

    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def admission_error(self, view):
        self.asked.append(view)
        return self.answer


def test_an_arrival_is_rejected_by_the_scheduler_seeing_only_its_view():
    request, kv = Request(0, 0.0, 8, 2), BlockPool(4, 16)
    scheduler = Refusing("no room for class b")
    assert arrival_rejection(request, 100, kv, scheduler, 0.0) == "no room for class b"
    assert [type(v) for v in scheduler.asked] == [RequestView]
    assert "exceeds max_model_len" in arrival_rejection(request, 9, kv, scheduler, 0.0)
    assert len(scheduler.asked) == 1  # not asked about a request the replica can never serve
    with pytest.raises(PolicyContractError, match="admission_error.*returned 3; it must return a reason"):
        arrival_rejection(request, 100, kv, Refusing(3), 0.0)


def test_admission_takes_a_request_from_anywhere_in_the_queue_and_keeps_its_first_scheduling():
    a, b, c = (Request(i, 0.0, 8, 2) for i in range(3))
    waiting, running = deque([a, b, c]), []
    admit(b, waiting, running, 1.0)
    admit(a, waiting, running, 2.0)
    assert list(waiting) == [c] and running == [b, a]
    assert (b.state, b.first_scheduled_s, a.first_scheduled_s) == (RequestState.RUNNING, 1.0, 2.0)
    preempt([b], running, waiting, BlockPool(4, 16))
    admit(b, waiting, running, 3.0)
    assert b.first_scheduled_s == 1.0


def test_allocation_beyond_the_free_memory_is_the_schedulers_contract_error():
    kv, request = BlockPool(4, 16), Request(0, 0.0, 60, 2)
    allocate(request, 3, kv, SCHEDULER, 0.5)
    assert (request.num_blocks, kv.num_free_blocks) == (3, 1)
    with pytest.raises(PolicyContractError, match=r"'vllm'.*t=0\.5.*needs 2 more blocks when 1 of 4 are free"):
        allocate(request, 2, kv, SCHEDULER, 0.5)
    assert request.num_blocks == 3


def running_requests(kv, *prompts):
    waiting, running = deque(Request(i, 0.0, p, 4) for i, p in enumerate(prompts)), []
    for request in list(waiting):
        admit(request, waiting, running, 0.0)
        allocate(request, new_blocks_needed(request, request.num_tokens, kv.block_size), kv, SCHEDULER, 0.0)
        request.num_computed_tokens = request.num_tokens
    return waiting, running


def test_preemption_recomputes_frees_the_blocks_and_requeues_in_order():
    kv = BlockPool(10, 16)
    waiting, running = running_requests(kv, 20, 40, 10)
    a, b, c = running
    waiting.append(late := Request(9, 1.0, 8, 2))
    assert preempt([c, a], running, waiting, kv) == 0
    assert running == [b] and list(waiting) == [c, a, late]
    assert [(r.state, r.num_computed_tokens, r.num_blocks, r.num_preemptions) for r in (a, c)] == [
        (RequestState.WAITING, 0, 0, 1)] * 2
    assert kv.num_free_blocks == 10 - b.num_blocks
    kv.check_conservation()


def test_a_swapped_victim_keeps_its_progress_in_host_memory_when_the_host_has_room():
    kv, host = BlockPool(10, 16), BlockPool(3, 16)
    waiting, running = running_requests(kv, 40, 20)
    big, small = running
    asked = []

    def swap(request):
        asked.append(request.num_preemptions)
        return PreemptionMode.SWAP

    assert preempt([big, small], running, waiting, kv, host, swap) == 3
    assert asked == [1, 1]  # the policy sees the preemption counted
    assert (big.state, big.num_computed_tokens, big.num_swaps, host.blocks_of(0)) == (
        RequestState.SWAPPED, 40, 1, [0, 1, 2])
    assert (small.state, small.num_computed_tokens, small.num_swaps) == (RequestState.WAITING, 0, 0)  # no room
    assert kv.num_free_blocks == 10 and not running


def test_sampled_tokens_grow_the_tokens_to_compute_and_report_the_end():
    request = Request(0, 0.0, 8, 3)
    assert not record_sampled(request, 1)
    assert (request.num_generated, request.num_tokens) == (1, 9)
    assert record_sampled(request, 2)
    assert (request.num_generated, request.num_tokens) == (3, 11)


@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 3), st.integers(0, 20), st.integers(0, 5)),
                min_size=1, max_size=12),
       st.integers(1, 40), st.sampled_from([1, 2, 16]), st.floats(0.0, 5.0), st.floats(0.0, 0.5))
def test_a_batch_of_decodes_follows_the_one_request_rules(states, steps, block_size, start, step_s):
    """`record_decoded` and `blocks_short`, the batch forms the engine's decode loops use, give what
    `record_sampled` and `new_blocks_needed` give request by request."""
    def batch():
        requests = []
        for index, (computed, spare_blocks, generated, left) in enumerate(states):
            request = Request(index, 0.0, computed, generated + left + 1)
            request.num_computed_tokens = computed
            request.num_blocks = -(-computed // block_size) + spare_blocks
            request.num_generated = generated
            request.last_token_s = start - 0.1 * index
            requests.append(request)
        return requests

    decoded, one_by_one = batch(), batch()
    contexts = [request.num_computed_tokens for request in decoded]
    assert blocks_short(decoded, contexts, steps, block_size) == [
        (request, new_blocks_needed(request, steps, block_size)) for request in decoded
        if new_blocks_needed(request, steps, block_size)]
    first_end, last_end = start + step_s, start + steps * step_s
    gaps, finished = record_decoded(decoded, steps, first_end, last_end, step_s if steps > 1 else 0.0)
    assert gaps == [first_end - request.last_token_s for request in one_by_one]
    assert finished == [request for request in decoded if request.num_generated >= request.output_tokens]
    for request, alone in zip(decoded, one_by_one, strict=True):
        alone.num_computed_tokens += steps
        done = record_sampled(alone, steps)
        assert (request.num_computed_tokens, request.num_tokens, request.num_generated, request in finished) == (
            alone.num_computed_tokens, alone.num_tokens, alone.num_generated, done)
        assert request.last_token_s == last_end


def test_a_finished_request_leaves_the_batch_and_frees_its_blocks():
    kv, finished = BlockPool(10, 16), deque()
    _, running = running_requests(kv, 20, 40)
    first, second = running
    retire(first, running, kv, finished, 4.0)
    assert running == [second] and list(finished) == [first]
    assert (first.state, first.finish_s, first.num_blocks) == (RequestState.FINISHED, 4.0, 0)
    assert kv.num_free_blocks == 10 - second.num_blocks


OPERATIONS = st.lists(st.tuples(st.sampled_from(["admit", "grow", "preempt", "finish"]), st.integers(0, 5)),
                      max_size=60)


@given(OPERATIONS)
def test_every_request_is_in_one_place_and_every_block_accounted_for(operations):
    kv, host, finished = BlockPool(12, 4), BlockPool(6, 4), deque()
    requests = [Request(i, 0.0, 3 + 2 * i, 5) for i in range(6)]
    waiting, running = deque(requests), []
    def swap_odd(request):
        return PreemptionMode.SWAP if request.request_id % 2 else PreemptionMode.RECOMPUTE

    for operation, index in operations:
        request = requests[index]
        swapped_back = len(host.blocks_of(request.request_id))
        if operation == "admit" and request in waiting and swapped_back <= kv.num_free_blocks:
            if request.is_swapped:
                allocate(request, host.release(request.request_id), kv, SCHEDULER, 0.0)
            admit(request, waiting, running, 0.0)
        elif operation == "grow" and request in running and kv.num_free_blocks:
            allocate(request, 1, kv, SCHEDULER, 0.0)
        elif operation == "preempt" and request in running:
            preempt([request], running, waiting, kv, host, swap_odd)
        elif operation == "finish" and request in running:
            retire(request, running, kv, finished, 1.0)
        places = [r in waiting for r in requests], [r in running for r in requests], [r in finished for r in requests]
        assert all(sum(where) == 1 for where in zip(*places, strict=True))
        assert all(r.state is RequestState.RUNNING for r in running)
        assert all(r.num_blocks == len(kv.blocks_of(r.request_id)) for r in requests)
        assert all(r.num_blocks == 0 for r in [*waiting, *finished])
        assert kv.num_used_blocks == sum(r.num_blocks for r in running)
        assert host.num_used_blocks == sum(len(host.blocks_of(r.request_id)) for r in waiting if r.is_swapped)
        assert all(not host.blocks_of(r.request_id) for r in requests if not r.is_swapped)
        assert all(not math.isnan(r.first_scheduled_s) for r in [*running, *finished])
        kv.check_conservation()
        host.check_conservation()
