"""Fast-forward: a stretch of identical decode-only iterations simulated without asking the scheduler.

While every running request decodes and nothing reaches this replica (no arrival, timeout,
finish or memory shortage), a scheduler that is stable under decoding keeps returning the same
batch. The stretch's iterations are costed ahead in segments, one vectorised call each, and
applied at once. The iteration an arrival falls into runs too, as its batch was chosen before
the arrival; with asynchronous scheduling so does the one after it, planned before the arrival
as well. An event that brings nothing to this replica does not end the stretch.

If the router may read this replica's progress, each segment ends before the next event
anywhere in the cluster and is applied then, so that the event sees what stepping would show.
If it reads none, a segment is cut short only by an arrival at this replica (which wakes the
wait: `cut_stretch`) or a waiting request's timeout, so a replica costs nothing per arrival
elsewhere. Per-token times still come from each iteration's end, so results equal stepping one
iteration at a time up to float rounding.
"""
from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy
from simpy.events import URGENT

from servesim.policies.views import blocks_for, blocks_short
from servesim.sim.engine.bookkeeping import record_decoded
from servesim.sim.engine.request import INFINITY

if TYPE_CHECKING:
    from servesim.sim.engine.replica import Replica
    from servesim.sim.engine.request import Request

MAX_STRETCH_STEPS = 4096
FIRST_SEGMENT_STEPS = 16
"""Iterations costed ahead at first; doubled while no event comes (most segments end at an arrival)."""
FIRST_UNOBSERVED_SEGMENT_STEPS = 64
"""The same when only this replica's own arrivals cut a stretch short: they come less often."""
MAX_SEGMENT_STEPS = 1024
"""Most iterations costed ahead at once (a stretch ends at MAX_STRETCH_STEPS in any case)."""


def run_stretch(replica: Replica, requests: list[Request], contexts: tuple[int, ...], blank_only: bool,
                ) -> Generator[simpy.Event, Any, int]:
    """Simulate the stretch that starts now; returns its iterations (0: run a single iteration).

    `requests` are every running request in the order of the scheduler's batch, `contexts` their
    computed tokens in the same order (a queue-ordered scheduler's batch is not in admission order).
    With `blank_only`, the stretch ends before its decodes would take a cached block (a waiting
    request's hit may shrink with it: `Replica._waiting_reuse_unreferenced`)."""
    limit = _steps_allowed(replica, requests, contexts, blank_only)
    if limit <= 1:
        return 0
    if replica.progress_observed or replica.interruptible:
        return (yield from _run_observed(replica, requests, contexts, limit))
    return (yield from _run_unobserved(replica, requests, contexts, limit))


def _run_observed(replica: Replica, requests: list[Request], contexts: tuple[int, ...], limit: int,
                  ) -> Generator[simpy.Event, Any, int]:
    """Segments up to each event in the cluster, applied before it, as stepping would show them.

    A scheduler that may interrupt an iteration on an arrival is asked about the iteration in
    flight, so with one the stretch stops before the iteration an event falls into."""
    env = replica.env
    if min(replica.next_arrival_s(), replica.next_timeout_s()) <= env.now:
        return 0
    num_waiting = len(replica.waiting)
    done = 0
    ahead = FIRST_SEGMENT_STEPS
    while done < limit:
        now = env.now
        next_event = min(replica.next_arrival_s(), replica.next_timeout_s())
        count = min(limit - done, ahead)
        ends, times = _segment(replica, contexts, done, count, now)
        before = int(np.searchsorted(ends, next_event, side="left"))
        if before:
            yield env.timeout(float(ends[before - 1]) - now)
            ends[before - 1] = env.now  # equal up to float rounding of SimPy's clock
            _apply(replica, requests, contexts, done, now, ends[:before])
            done += before
        if before == count:
            ahead = min(2 * ahead, MAX_SEGMENT_STEPS)
            continue
        if replica.interruptible:
            break  # an arrival may stop the iteration in flight, if the scheduler says so: step it
        # The event falls into the next iteration, whose batch was chosen before it.
        done += yield from _one_more(replica, requests, contexts, done, float(times[before]))
        if done >= limit or replica.next_timeout_s() <= env.now:
            break
        if replica.promote_staged():
            # Asynchronous scheduling planned this step before the arrival: it runs as planned.
            done += yield from _one_more(replica, requests, contexts, done,
                                         _price(replica, contexts, times, before + 1, done))
            break
        if len(replica.waiting) != num_waiting:
            break
        ahead = FIRST_SEGMENT_STEPS
    return done


def _run_unobserved(replica: Replica, requests: list[Request], contexts: tuple[int, ...], limit: int,
                    ) -> Generator[simpy.Event, Any, int]:
    """Segments that only an arrival at this replica cuts short (it wakes the wait), or a
    waiting request's timeout; arrivals elsewhere cost this replica nothing."""
    env = replica.env
    done = 0
    ahead = FIRST_UNOBSERVED_SEGMENT_STEPS
    while done < limit:
        now = env.now
        timeout_s = replica.next_timeout_s()
        count = min(limit - done, ahead)
        ends, times = _segment(replica, contexts, done, count, now)
        steps = count if timeout_s == INFINITY else min(count, int(np.searchsorted(ends, timeout_s, side="left")) + 1)
        replica.stretch_interruptible = True
        cut = (yield env.timeout(float(ends[steps - 1]) - now)) is CUT
        if cut:
            # An arrival here: the iteration it falls into was planned before it and runs on.
            steps = int(np.searchsorted(ends, env.now, side="left")) + 1
            yield env.timeout(float(ends[steps - 1]) - env.now)
        replica.stretch_interruptible = False
        ends[steps - 1] = env.now  # equal up to float rounding of SimPy's clock
        if cut and done + steps < limit and replica.next_timeout_s() > env.now and replica.promote_staged():
            # Asynchronous scheduling planned the next step before the arrival: it runs as planned,
            # applied with these (nobody reads this replica's progress while it runs).
            yield env.timeout(_price(replica, contexts, times, steps, done + steps))
            if steps < len(ends):
                ends[steps] = env.now
                ends = ends[:steps + 1]
            else:
                ends = np.append(ends, env.now)
            _apply(replica, requests, contexts, done, now, ends, planned_last=True)
            return done + steps + 1
        _apply(replica, requests, contexts, done, now, ends[:steps])
        done += steps
        if cut or done >= limit or replica.next_timeout_s() <= env.now:
            break
        ahead = min(2 * ahead, MAX_SEGMENT_STEPS)
    return done


CUT = object()
"""What a stretch waiting unobserved is woken with when an arrival cuts it short (`cut_stretch`)."""


class _Cut(simpy.Event):
    """Resumes the process waiting on `waited` now with CUT, ahead of the events due at this time,
    as `Process.interrupt` would, without raising an exception into it (the costlier part)."""

    def __init__(self, env: simpy.Environment, waited: simpy.Event) -> None:
        super().__init__(env)
        self.callbacks, waited.callbacks = waited.callbacks, []
        self._ok = True
        self._value = CUT
        env.schedule(self, URGENT)


def cut_stretch(replica: Replica) -> None:
    """An arrival at `replica`, whose stretch waits unobserved: it runs on only to the end of the
    iteration the arrival falls into (`_run_unobserved`)."""
    replica.stretch_interruptible = False
    target = replica.process.target
    assert target is not None  # a stretch waits on its segment's timeout
    _Cut(replica.env, target)


def _segment(replica: Replica, contexts: tuple[int, ...], done: int, count: int, now: float,
             ) -> tuple[np.ndarray, np.ndarray]:
    """End times and durations of the stretch's iterations `done` to `done + count` from `now`."""
    times = replica.cost_model.decode_stretch_times(contexts, count, done)
    ends = times.copy()
    ends[0] += now
    return ends.cumsum(out=ends), times  # summed in stepping's order, now + t0 + t1 ...: same rounding


def _price(replica: Replica, contexts: tuple[int, ...], times: np.ndarray, index: int, iteration: int) -> float:
    """The price of the stretch's iteration `iteration`, its segment's `index`: the segment's, if
    it went that far (the same number a new call gives: each iteration is priced on its own
    contexts), else priced now."""
    if index < len(times):
        return float(times[index])
    return float(replica.cost_model.decode_stretch_times(contexts, 1, iteration)[0])


def _one_more(replica: Replica, requests: list[Request], contexts: tuple[int, ...], done: int,
              seconds: float) -> Generator[simpy.Event, Any, int]:
    """Run the stretch's next iteration alone, `seconds` long; returns 1.

    Its blocks are allocated as it starts, as stepping would, so that whoever looks at this
    replica while it runs sees the same memory."""
    env = replica.env
    start = env.now
    _allocate_for(replica, requests, contexts, done + 1)
    yield env.timeout(seconds)
    _apply(replica, requests, contexts, done, start, np.array([env.now]))
    return 1


def _allocate_for(replica: Replica, requests: list[Request], contexts: tuple[int, ...], steps: int) -> None:
    """Grow each request's blocks to hold its context after `steps` iterations of the stretch."""
    kv = replica.kv
    for request, need in blocks_short(requests, contexts, steps, kv.block_size):
        kv.allocate(request.request_id, need)
        request.num_blocks += need


def _steps_allowed(replica: Replica, requests: list[Request], contexts: tuple[int, ...], blank_only: bool) -> int:
    """Most iterations before anything in the batch itself changes: a request finishes (on the
    last one) or the free blocks (the blank ones, with `blank_only`) run out."""
    remaining = min([r.output_tokens - r.num_generated for r in requests])
    kv = replica.kv
    free = kv.num_blank_blocks if blank_only else kv.num_free_blocks
    return _steps_memory_allows(kv.block_size, free, requests, contexts, min(remaining, MAX_STRETCH_STEPS))


def _steps_memory_allows(block_size: int, free: int, requests: list[Request], contexts: tuple[int, ...],
                         upper: int) -> int:
    """Largest k <= upper such that k decode steps fit in `free` blocks (step 0 is allocated)."""
    if len(requests) * blocks_for(upper, block_size) <= free:
        # Each holds at least the blocks of its context c, and blocks_for(c + k) - blocks_for(c)
        # <= blocks_for(k): the usual case, known without a pass over the batch.
        return upper

    def extra_blocks(k: int) -> int:
        return sum([need for _, need in blocks_short(requests, contexts, k, block_size)])

    low, high = 1, upper
    if high <= 1 or extra_blocks(high) <= free:
        return high
    while high - low > 1:
        mid = (low + high) // 2
        if extra_blocks(mid) <= free:
            low = mid
        else:
            high = mid
    return low


def _apply(replica: Replica, running: list[Request], contexts: tuple[int, ...], done: int, start: float,
           ends: np.ndarray, planned_last: bool = False) -> None:
    """Apply the stretch's iterations `done` to `done + len(ends)`, which ran from `start`. With
    `planned_last`, the last is the step that asynchronous scheduling planned before an arrival:
    its gaps are pooled, and its experts metered, as a step's of its own (`_one_more`'s)."""
    steps = len(ends)
    first_end = float(ends[0])
    last_end = float(ends[-1])
    if steps > 1:
        inner = ends[1:] - ends[:-1]  # `np.diff`, without its argument handling
        inner_max = float(np.maximum.reduce(inner))  # `max()` without its Python-level wrapper
    else:
        inner, inner_max = None, 0.0
    first_gaps, finished = record_decoded(running, steps, first_end, last_end, inner_max)
    _allocate_for(replica, running, contexts, done + steps)
    meter = replica.expert_meter
    if meter is not None:
        if planned_last:  # the steps before it, then it
            meter.add_decodes(len(running), steps - 1)
            meter.add_decodes(len(running), 1)
        else:
            meter.add_decodes(len(running), steps)
    replica.outstanding_tokens -= steps * len(running)
    metrics = replica.metrics
    replica.gaps.add_step(first_gaps)
    if inner is not None:
        if planned_last:
            if steps > 2:
                replica.gaps.add(inner[:-1], len(running))
            replica.gaps.add_equal_steps([float(inner[-1])], len(running))
        else:
            replica.gaps.add(inner, len(running))
    if metrics.record_iterations:
        starts = np.concatenate(([start], ends[:-1]))
        metrics.add_iteration_stretch(replica.replica_id, starts, ends, len(running))
    if metrics.tokens is not None:
        metrics.tokens.add_stretch([request.request_id for request in running], ends)
    for request in finished:
        replica.finish(request, last_end)
