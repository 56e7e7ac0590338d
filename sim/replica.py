"""One serving replica: a SimPy process running iteration-level continuous batching.

Each loop asks the scheduler for a batch, applies its preemptions, admits and allocates, costs
the batch, advances time by one iteration and applies the result. When the scheduler promises
that a decode-only batch stays the same until something happens (an arrival, a finish, a
memory shortage), the whole stretch of iterations is costed and applied in one step.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator

import numpy as np
import simpy

from hwmodels import BatchShape, CostModel
from policies import SchedulerPolicy, ScheduleDecision
from sim.errors import EngineInvariantError
from sim.kv_memory import BlockPool, blocks_for_tokens
from sim.metrics import MetricsRecorder
from sim.request import Request, RequestState

MAX_STRETCH_STEPS = 4096


class Replica:
    """A model instance on a group of devices, with its own queues, KV pool and scheduler."""

    def __init__(
        self,
        env: simpy.Environment,
        replica_id: int,
        scheduler: SchedulerPolicy,
        cost_model: CostModel,
        kv: BlockPool,
        metrics: MetricsRecorder,
        max_model_len: int,
        next_arrival_s: Callable[[], float],
        on_done: Callable[[Request], None],
        fast_forward: bool = True,
    ) -> None:
        self.env = env
        self.replica_id = replica_id
        self.scheduler = scheduler
        self.cost_model = cost_model
        self.kv = kv
        self.metrics = metrics
        self.max_model_len = max_model_len
        self.next_arrival_s = next_arrival_s
        self.on_done = on_done
        self.fast_forward = fast_forward and scheduler.stable_under_decode
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._wake: simpy.Event | None = None
        self._gaps = metrics.gap_sink()
        self.num_iterations = 0
        self.num_engine_steps = 0
        self.process = env.process(self._loop())

    def submit(self, request: Request) -> None:
        """Take an arriving request: queue it, or reject it if it could never be served here."""
        request.replica_id = self.replica_id
        reason = self._rejection_reason(request)
        if reason:
            request.state = RequestState.REJECTED
            request.reject_reason = reason
            request.finish_s = self.env.now
            self.on_done(request)
            return
        self.waiting.append(request)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _rejection_reason(self, request: Request) -> str:
        total = request.prompt_tokens + request.output_tokens
        if total > self.max_model_len:
            return f"prompt + output = {total} tokens exceeds max_model_len {self.max_model_len}"
        kv_tokens = total - 1
        needed = blocks_for_tokens(kv_tokens, self.kv.block_size)
        if needed > self.kv.num_blocks:
            return f"needs {needed} KV blocks ({kv_tokens} tokens) but the replica has {self.kv.num_blocks}"
        return self.scheduler.admission_error(request) or ""

    def _loop(self) -> Generator[simpy.Event, None, None]:
        env = self.env
        while True:
            if not self.running and not self.waiting:
                self._wake = env.event()
                yield self._wake
                continue
            decision = self.scheduler.schedule(self, env.now)
            self._preempt(decision)
            if not decision.scheduled:
                if not decision.preempted:
                    self._wake = env.event()
                    yield self._wake
                continue
            news, contexts, all_decode = self._admit_and_allocate(decision)
            self._sample(len(news), sum(news))
            start = env.now
            self.num_engine_steps += 1
            if self.fast_forward and all_decode and not decision.preempted and len(news) == len(self.running):
                steps, ends = self._plan_stretch(contexts)
                if steps > 1:
                    yield env.timeout(float(ends[steps - 1]) - start)
                    ends[steps - 1] = env.now  # equal up to float rounding of SimPy's clock
                    self._apply_stretch(contexts, start, ends[:steps])
                    self.num_iterations += steps
                    continue
            yield env.timeout(self.cost_model.iteration_time(BatchShape(news, contexts)))
            self._apply_iteration(decision, start)
            self.num_iterations += 1

    def _preempt(self, decision: ScheduleDecision) -> None:
        for victim in decision.preempted:
            request: Request = victim  # type: ignore[assignment]
            if request.state is not RequestState.RUNNING:
                raise EngineInvariantError(
                    f"replica {self.replica_id} at t={self.env.now:.6f}: scheduler preempted {request!r}, which is not running"
                )
            self.running.remove(request)
            self.kv.release(request.request_id)
            request.num_blocks = 0
            request.num_computed_tokens = 0
            request.num_preemptions += 1
            request.state = RequestState.WAITING
        for victim in decision.preempted:
            self.waiting.appendleft(victim)  # type: ignore[arg-type]

    def _admit_and_allocate(self, decision: ScheduleDecision) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
        """Admit scheduled waiting requests and give every entry its KV slots.

        Returns the batch shape (new tokens, contexts) and whether every entry is a running
        request decoding one token."""
        news = []
        contexts = []
        all_decode = True
        block_size = self.kv.block_size
        running_state = RequestState.RUNNING
        for entry, num_new in decision.scheduled:
            request: Request = entry  # type: ignore[assignment]
            if request.state is not running_state:
                self._admit(request)
                all_decode = False
            computed = request.num_computed_tokens
            if num_new < 1 or computed + num_new > request.num_tokens:
                raise EngineInvariantError(
                    f"replica {self.replica_id} at t={self.env.now:.6f}: scheduler gave {request!r} {num_new} new tokens"
                )
            if num_new != 1 or not request.num_generated or computed + 1 != request.num_tokens:
                all_decode = False
            need = -(-(computed + num_new) // block_size) - request.num_blocks
            if need > 0:
                self.kv.allocate(request.request_id, need)
                request.num_blocks += need
            news.append(num_new)
            contexts.append(computed)
        return tuple(news), tuple(contexts), all_decode

    def _admit(self, request: Request) -> None:
        if request.state is not RequestState.WAITING:
            raise EngineInvariantError(
                f"replica {self.replica_id} at t={self.env.now:.6f}: scheduler scheduled {request!r}"
            )
        if self.waiting and self.waiting[0] is request:
            self.waiting.popleft()
        else:
            self.waiting.remove(request)
        request.state = RequestState.RUNNING
        if math.isnan(request.first_scheduled_s):
            request.first_scheduled_s = self.env.now
        self.running.append(request)

    def _sample(self, batch_size: int, batch_tokens: int) -> None:
        self.metrics.sample_replica(
            (
                self.env.now,
                self.replica_id,
                len(self.waiting),
                len(self.running),
                batch_size,
                batch_tokens,
                self.kv.num_used_blocks,
                self.kv.num_blocks,
            )
        )

    def _apply_iteration(self, decision: ScheduleDecision, start: float) -> None:
        now = self.env.now
        num_prefill_tokens = 0
        num_decodes = 0
        for entry, num_new in decision.scheduled:
            request: Request = entry  # type: ignore[assignment]
            computed = request.num_computed_tokens + num_new
            request.num_computed_tokens = computed
            if num_new == 1 and request.num_generated and computed == request.num_tokens:
                num_decodes += 1
            else:
                num_prefill_tokens += num_new
            if computed == request.num_tokens:
                self._emit_token(request, now)
        if self.metrics.record_iterations:
            self.metrics.add_iteration(
                (self.replica_id, start, now, len(decision.scheduled), num_prefill_tokens + num_decodes,
                 num_prefill_tokens, num_decodes)
            )

    def _emit_token(self, request: Request, now: float) -> None:
        request.num_generated += 1
        request.num_tokens += 1
        if request.num_generated == 1:
            request.first_token_s = now
        else:
            gap = now - request.last_token_s
            self._gaps.append(gap)
            if gap > request.max_tbt_s:
                request.max_tbt_s = gap
        request.last_token_s = now
        if request.num_generated >= request.output_tokens:
            self._finish(request, now)

    def _finish(self, request: Request, now: float) -> None:
        request.state = RequestState.FINISHED
        request.finish_s = now
        self.running.remove(request)
        self.kv.release(request.request_id)
        request.num_blocks = 0
        self.on_done(request)

    def _plan_stretch(self, contexts: tuple[int, ...]) -> tuple[int, np.ndarray]:
        """How many identical decode iterations can run before anything could change, and their end times."""
        now = self.env.now
        next_arrival = self.next_arrival_s()
        first = self.cost_model.iteration_time(BatchShape((1,) * len(contexts), contexts))
        if now + 2 * first >= next_arrival:
            return 1, np.empty(0)
        remaining = min(r.output_tokens - r.num_generated for r in self.running)
        limit = self._steps_memory_allows(contexts, min(remaining, MAX_STRETCH_STEPS))
        if limit <= 1:
            return 1, np.empty(0)
        times = self.cost_model.decode_stretch_times(np.asarray(contexts), limit)
        ends = np.cumsum(np.concatenate(([now], times)))[1:]
        return min(limit, int(np.searchsorted(ends, next_arrival, side="left"))), ends

    def _steps_memory_allows(self, contexts: tuple[int, ...], upper: int) -> int:
        """Largest k <= upper such that k decode steps fit in the free blocks (step 0 is allocated)."""
        block_size = self.kv.block_size
        free = self.kv.num_free_blocks
        held = [r.num_blocks for r in self.running]

        def extra_blocks(k: int) -> int:
            total = 0
            for c, h in zip(contexts, held):
                need = -(-(c + k) // block_size) - h
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

    def _apply_stretch(self, contexts: tuple[int, ...], start: float, ends: np.ndarray) -> None:
        steps = len(ends)
        block_size = self.kv.block_size
        first_end = float(ends[0])
        last_end = float(ends[-1])
        inner = np.diff(ends)
        inner_max = float(inner.max())
        first_gaps = np.empty(len(self.running))
        finished = []
        for i, request in enumerate(self.running):
            gap = first_end - request.last_token_s
            first_gaps[i] = gap
            request.max_tbt_s = max(request.max_tbt_s, gap, inner_max)
            request.last_token_s = last_end
            request.num_computed_tokens += steps
            request.add_generated(steps)
            need = blocks_for_tokens(contexts[i] + steps, block_size) - request.num_blocks
            if need > 0:
                self.kv.allocate(request.request_id, need)
                request.num_blocks += need
            if request.num_generated >= request.output_tokens:
                finished.append(request)
        self.metrics.add_gaps(first_gaps)
        self.metrics.add_gaps(inner, weight=len(self.running))
        if self.metrics.record_iterations:
            starts = np.concatenate(([start], ends[:-1]))
            self.metrics.add_iteration_stretch(self.replica_id, starts, ends, len(self.running))
        for request in finished:
            self._finish(request, last_end)

