"""Serving bookkeeping written once for both engines: the simulator's replica (with its
fast-forward) and the profiler's reference engine apply a scheduler's decision with these, so
what "rejected", "admitted", "preempted" and "a token was sampled" mean cannot drift apart.
How many blocks a request needs and whether it is decoding live in `policies.views`
(`blocks_for`, `new_blocks_needed`, `is_decode`), shared with the schedulers.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from servesim.policies.views import blocks_for


class _Pool(Protocol):
    @property
    def num_blocks(self) -> int: ...
    @property
    def block_size(self) -> int: ...


def rejection_reason(prompt_tokens: int, output_tokens: int, max_model_len: int, kv: _Pool) -> str:
    """Why a request could never be served by this replica ("" if it could): too long for the
    model, or more KV than the whole pool holds (its last token's KV is never stored)."""
    total = prompt_tokens + output_tokens
    if total > max_model_len:
        return f"prompt + output = {total} tokens exceeds max_model_len {max_model_len}"
    kv_tokens = total - 1
    needed = blocks_for(kv_tokens, kv.block_size)
    if needed > kv.num_blocks:
        return f"needs {needed} KV blocks ({kv_tokens} tokens) but the replica has {kv.num_blocks}"
    return ""


def leave_queue(waiting: deque[Any], request: Any) -> None:
    """Admission takes `request` out of the waiting queue (usually its head)."""
    if waiting and waiting[0] is request:
        waiting.popleft()
    else:
        waiting.remove(request)


def requeue_preempted(waiting: deque[Any], preempted: Sequence[Any]) -> None:
    """Preempted requests go back to the front of the queue, in the order they were preempted."""
    waiting.extendleft(reversed(preempted))


def record_sampled(request: Any, count: int) -> bool:
    """`count` new tokens were sampled for `request` (its tokens to compute grow with them);
    True once its whole output has been generated."""
    request.num_generated += count
    request.num_tokens += count
    return request.num_generated >= request.output_tokens
