"""The bookkeeping both engines share (simulator replica and reference engine)."""
from __future__ import annotations

from collections import deque

from servesim.sim.engine.bookkeeping import leave_queue, record_sampled, rejection_reason, requeue_preempted
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.request import Request


def test_a_request_is_rejected_when_too_long_or_larger_than_the_pool():
    kv = BlockPool(4, 16)
    assert rejection_reason(40, 25, 100, kv) == ""  # 64 tokens of KV fill the 4 blocks exactly
    assert "needs 5 KV blocks (65 tokens)" in rejection_reason(40, 26, 100, kv)
    assert "exceeds max_model_len 60" in rejection_reason(40, 21, 60, kv)


def test_admission_takes_a_request_from_anywhere_in_the_queue():
    a, b, c = (Request(i, 0.0, 8, 2) for i in range(3))
    waiting = deque([a, b, c])
    leave_queue(waiting, b)
    leave_queue(waiting, a)
    assert list(waiting) == [c]


def test_preempted_requests_go_back_to_the_front_in_order():
    a, b, c = (Request(i, 0.0, 8, 2) for i in range(3))
    waiting = deque([c])
    requeue_preempted(waiting, [a, b])
    assert list(waiting) == [a, b, c]


def test_sampled_tokens_grow_the_tokens_to_compute_and_report_the_end():
    request = Request(0, 0.0, 8, 3)
    assert not record_sampled(request, 1)
    assert (request.num_generated, request.num_tokens) == (1, 9)
    assert record_sampled(request, 2)
    assert (request.num_generated, request.num_tokens) == (3, 11)
