"""Serving bookkeeping written once for both engines: the simulator's replica (with its
fast-forward) and the profiler's reference engine serve the same `Request`s from the same
`BlockPool` and apply a scheduler's decision with these functions, so what "rejected",
"admitted", "preempted", "a token was sampled" and "finished" mean cannot drift apart.
How many blocks a request needs and whether it is decoding live in `policies.views`
(`blocks_for`, `new_blocks_needed`, `is_decode`), shared with the schedulers.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from servesim.policies import PreemptionMode
from servesim.policies.contract import contract_violation, policy_raised
from servesim.policies.views import blocks_for
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.request import Request, RequestState

if TYPE_CHECKING:
    from servesim.policies import SchedulerPolicy
    from servesim.sim.engine.decision_check import CheckedDecision, DecisionChecker
    from servesim.sim.engine.views import ReplicaView


def rejection_reason(prompt_tokens: int, output_tokens: int, max_model_len: int, kv: BlockPool) -> str:
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


def arrival_rejection(request: Request, max_model_len: int, kv: BlockPool, scheduler: Any, now: float) -> str:
    """Why an arriving request is rejected ("" if it is queued): `rejection_reason`, else the
    scheduler's `admission_error` (asked with the request's view, its answer checked)."""
    reason = rejection_reason(request.prompt_tokens, request.output_tokens, max_model_len, kv)
    if reason:
        return reason
    try:
        error = scheduler.admission_error(request.view)
    except Exception as exc:
        raise policy_raised(scheduler, "scheduler.admission_error", now, exc) from exc
    if error is not None and not isinstance(error, str):
        raise contract_violation(scheduler, "scheduler.admission_error", now,
                                 f"returned {error!r}; it must return a reason (str) or None")
    return error or ""


def admit(request: Request, waiting: deque[Request], running: list[Request], now: float) -> None:
    """A queued request joins the running batch: it leaves the queue (usually its head), runs from
    now on, and keeps the time it was first scheduled (a preempted request was scheduled before)."""
    if waiting and waiting[0] is request:
        waiting.popleft()
    else:
        waiting.remove(request)
    request.state = RequestState.RUNNING
    if math.isnan(request.first_scheduled_s):
        request.first_scheduled_s = now
    running.append(request)


def allocate(request: Request, count: int, kv: BlockPool, scheduler: Any, now: float) -> None:
    """Give `request` `count` more KV blocks. The scheduler promised they are free: more than the
    free memory breaks its contract (checked here, where prefix-cache hits and swap-ins are known)."""
    free = kv.num_free_blocks
    if count > free:
        raise contract_violation(
            scheduler, "scheduler.schedule", now,
            f"scheduled more than the free KV memory: {request!r} needs {count} more blocks "
            f"when {free} of {kv.num_blocks} are free",
        )
    kv.allocate(request.request_id, count)
    request.num_blocks += count


def preempt(preempted: Sequence[Request], running: list[Request], waiting: deque[Request], kv: BlockPool,
            host: BlockPool | None = None, mode: Callable[[Request], PreemptionMode] | None = None) -> int:
    """Take the victims off the running batch and give back their device blocks; they return to the
    front of the queue in the order they were preempted. A victim's count of preemptions grows
    before `mode` is asked (the preemption policy sees it). Its KV moves to `host` when `mode`
    chooses swap and the host has room; otherwise (and always without `mode`) it is recomputed
    from its first token, except what a prefix-caching pool still holds when it is readmitted.
    Returns the blocks to copy to the host."""
    swapped = 0
    for request in preempted:
        running.remove(request)
        request.num_preemptions += 1
        if (mode is not None and host is not None and mode(request) is PreemptionMode.SWAP
                and host.num_free_blocks >= request.num_blocks):
            host.allocate(request.request_id, request.num_blocks)
            swapped += request.num_blocks
            request.num_swaps += 1
            request.state = RequestState.SWAPPED
        else:
            kv.keep_for_recompute(request, request.num_computed_tokens)
            request.num_computed_tokens = 0
            request.state = RequestState.WAITING
        kv.release(request.request_id)
        request.num_blocks = 0
    waiting.extendleft(reversed(preempted))
    return swapped


def record_sampled(request: Request, count: int) -> bool:
    """`count` new tokens were sampled for `request` (its tokens to compute grow with them);
    True once its whole output has been generated."""
    request.num_generated += count
    request.num_tokens += count
    return request.num_generated >= request.output_tokens


def record_decoded(requests: Sequence[Request], steps: int, first_end: float, last_end: float, inner_max: float,
                   ) -> tuple[list[float], list[Request]]:
    """Each of `requests` decoded a token at the end of each of `steps` iterations, the first
    ending at `first_end`, the last at `last_end`, `inner_max` the longest time between two of
    them: `record_sampled` for a batch of decodes (inlined: it is the fast-forward's inner loop),
    with their token times. Returns each one's gap to the first of these tokens, and those whose
    output is complete."""
    first_gaps = []
    finished = []
    for request in requests:
        gap = first_end - request.last_token_s
        first_gaps.append(gap)
        if gap > request.max_tbt_s:
            request.max_tbt_s = gap
        if inner_max > request.max_tbt_s:
            request.max_tbt_s = inner_max
        request.last_token_s = last_end
        request.num_computed_tokens += steps
        request.num_tokens += steps
        request.num_generated += steps
        if request.num_generated >= request.output_tokens:
            finished.append(request)
    return first_gaps, finished


def retire(request: Request, running: list[Request], kv: BlockPool, recently_finished: deque[Request],
           now: float) -> None:
    """`request` generated its whole output: it leaves the batch, frees its blocks and is finished."""
    running.remove(request)
    kv.release(request.request_id)
    request.num_blocks = 0
    request.prefix_keys = None
    recently_finished.append(request)
    request.state = RequestState.FINISHED
    request.finish_s = now


def checked_schedule(scheduler: SchedulerPolicy, view: ReplicaView, checker: DecisionChecker,
                     now: float) -> CheckedDecision:
    """Ask the scheduler for the next batch on the read-only view and check the decision before
    anything is applied; an exception inside the policy becomes its contract error."""
    try:
        decision = scheduler.schedule(view, now)
    except Exception as exc:
        raise policy_raised(scheduler, "scheduler.schedule", now, exc) from exc
    return checker.check(decision, now)
