"""Fast-forward: a stretch of identical decode-only iterations simulated in one step.

While every running request decodes and nothing happens (no arrival, timeout, finish or
memory shortage), a scheduler that is stable under decoding keeps returning the same batch. The
stretch's iteration times are costed in one vectorised call and its tokens applied at once;
per-token times still come from each iteration's end, so results equal stepping one
iteration at a time up to float rounding.
"""
from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np
import simpy

from servesim.hwmodels import BatchShape
from servesim.policies.views import blocks_for
from servesim.sim.engine.bookkeeping import record_sampled

if TYPE_CHECKING:
    from servesim.sim.engine.replica import Replica
    from servesim.sim.engine.request import Request

MAX_STRETCH_STEPS = 4096


def run_stretch(replica: Replica, requests: list[Request], contexts: tuple[int, ...],
                ) -> Generator[simpy.Event, None, int]:
    """Simulate the stretch that starts now; returns its iterations (0: run a single iteration).

    `requests` are every running request in the order of the scheduler's batch, `contexts` their
    computed tokens in the same order (a queue-ordered scheduler's batch is not in admission order)."""
    start = replica.env.now
    steps, ends = _plan(replica, requests, contexts)
    if steps <= 1:
        return 0
    yield replica.env.timeout(float(ends[steps - 1]) - start)
    ends[steps - 1] = replica.env.now  # equal up to float rounding of SimPy's clock
    _apply(replica, requests, contexts, start, ends[:steps])
    return steps


def _plan(replica: Replica, requests: list[Request], contexts: tuple[int, ...]) -> tuple[int, np.ndarray]:
    """How many identical decode iterations can run before anything could change, and their end times.

    Besides arrivals, a waiting request giving up may change the batch: the request behind it
    may then fit."""
    now = replica.env.now
    next_event = min(replica.next_arrival_s(), replica.next_timeout_s())
    first = replica.cost_model.iteration_time(BatchShape((1,) * len(contexts), contexts))
    if now + 2 * first >= next_event:
        return 1, np.empty(0)
    remaining = min(r.output_tokens - r.num_generated for r in requests)
    limit = _steps_memory_allows(replica, requests, contexts, min(remaining, MAX_STRETCH_STEPS))
    if limit <= 1:
        return 1, np.empty(0)
    times = replica.cost_model.decode_stretch_times(np.asarray(contexts), limit)
    ends = np.cumsum(np.concatenate(([now], times)))[1:]
    return min(limit, int(np.searchsorted(ends, next_event, side="left"))), ends


def _steps_memory_allows(replica: Replica, requests: list[Request], contexts: tuple[int, ...], upper: int) -> int:
    """Largest k <= upper such that k decode steps fit in the free blocks (step 0 is allocated)."""
    block_size = replica.kv.block_size
    free = replica.kv.num_free_blocks
    held = [r.num_blocks for r in requests]

    def extra_blocks(k: int) -> int:
        total = 0
        for c, h in zip(contexts, held, strict=True):
            need = blocks_for(c + k, block_size) - h
            if need > 0:
                total += need
        return total

    low, high = 1, upper
    if extra_blocks(high) <= free:
        return high
    while high - low > 1:
        mid = (low + high) // 2
        if extra_blocks(mid) <= free:
            low = mid
        else:
            high = mid
    return low


def _apply(replica: Replica, running: list[Request], contexts: tuple[int, ...], start: float, ends: np.ndarray,
           ) -> None:
    steps = len(ends)
    block_size = replica.kv.block_size
    first_end = float(ends[0])
    last_end = float(ends[-1])
    inner = np.diff(ends)
    inner_max = float(inner.max())
    first_gaps = np.empty(len(running))
    finished = []
    for i, request in enumerate(running):
        gap = first_end - request.last_token_s
        first_gaps[i] = gap
        request.max_tbt_s = max(request.max_tbt_s, gap, inner_max)
        request.last_token_s = last_end
        request.num_computed_tokens += steps
        done = record_sampled(request, steps)
        need = blocks_for(contexts[i] + steps, block_size) - request.num_blocks
        if need > 0:
            replica.kv.allocate(request.request_id, need)
            request.num_blocks += need
        if done:
            finished.append(request)
    metrics = replica.metrics
    metrics.add_gaps(first_gaps)
    metrics.add_gaps(inner, weight=len(running))
    if metrics.record_iterations:
        starts = np.concatenate(([start], ends[:-1]))
        metrics.add_iteration_stretch(replica.replica_id, starts, ends, len(running))
    for request in finished:
        replica.finish(request, last_end)
