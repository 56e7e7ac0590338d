"""One serving replica: a SimPy process running iteration-level continuous batching.

Each loop drops requests that gave up waiting, asks the scheduler for a batch, applies its
preemptions (recompute or swap), admits and allocates, costs the batch, advances time by one
iteration and applies the result. When the scheduler promises that a decode-only batch stays
the same until something happens, the whole stretch of iterations is costed and applied in one
step (`sim.engine.stretch`). A scheduler that preempts at operator boundaries may interrupt an
iteration on an arrival; it is then suspended and later resumed (`sim.engine.iteration`).
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import simpy

from servesim.hwmodels import BatchShape, CostModel
from servesim.policies import PreemptionMode, SchedulerPolicy, ScheduleDecision
from servesim.sim.errors import EngineInvariantError
from servesim.sim.engine.iteration import Iteration
from servesim.sim.engine.kv_memory import BlockPool, blocks_for_tokens
from servesim.sim.reporting.metrics import MetricsRecorder
from servesim.sim.engine.request import INFINITY, Request, RequestState
from servesim.sim.engine.stretch import run_stretch

RECENTLY_FINISHED = 1000


@dataclass(frozen=True)
class ReplicaSetup:
    """What a replica is given besides its policies: memory, limits and the swap link."""

    kv: BlockPool
    host: BlockPool
    max_model_len: int
    swap_block_s: float
    """Seconds to move one KV block between device and host memory (each device its shard)."""
    fast_forward: bool = True
    async_scheduling: bool = False
    """Plan each step while the previous one runs (vLLM >= 0.14): an arrival waits one extra step."""


class Replica:
    """A model instance on a group of devices, with its own queues, KV pool and scheduler."""

    def __init__(
        self,
        env: simpy.Environment,
        replica_id: int,
        scheduler: SchedulerPolicy,
        cost_model: CostModel,
        setup: ReplicaSetup,
        metrics: MetricsRecorder,
        next_arrival_s: Callable[[], float],
        on_done: Callable[[Request], None],
    ) -> None:
        self.env = env
        self.replica_id = replica_id
        self.scheduler = scheduler
        self.cost_model = cost_model
        self.kv = setup.kv
        self.host = setup.host
        self.max_model_len = setup.max_model_len
        self.swap_block_s = setup.swap_block_s
        self.metrics = metrics
        self.next_arrival_s = next_arrival_s
        self.on_done = on_done
        self.fast_forward = setup.fast_forward and scheduler.stable_under_decode
        self._interruptible = type(scheduler).interrupt is not SchedulerPolicy.interrupt
        self.async_scheduling = setup.async_scheduling and not self._interruptible
        self._staged: list[Request] = []
        """Arrivals during the running step: with async scheduling the next step was planned without them."""
        self._stepping = False
        self.waiting: deque[Request] = deque()
        self._running: list[Request] = []
        self.suspended: list[Iteration] = []
        self.recently_finished: deque[Request] = deque(maxlen=RECENTLY_FINISHED)
        self.in_flight: Iteration | None = None
        self._interrupting = False
        self._wake: simpy.Event | None = None
        self._pending_swap_blocks = 0
        self._timeouts: list[tuple[float, int, Request]] = []
        """(timeout, id, request) of queued requests that may give up, earliest first."""
        self._gaps = metrics.gap_sink()
        self.num_iterations = 0
        self.num_engine_steps = 0
        self.num_interrupts = 0
        self.process = env.process(self._loop())

    @property
    def running(self) -> list[Request]:
        """Admitted requests in admission order, except those in suspended iterations."""
        if not self.suspended:
            return self._running
        held = {id(r) for iteration in self.suspended for r, _ in iteration.entries}
        return [r for r in self._running if id(r) not in held]

    @property
    def num_outstanding(self) -> int:
        return len(self.waiting) + len(self._running) + len(self._staged)

    def submit(self, request: Request) -> None:
        """Take an arriving request: queue it, or reject it if it could never be served here."""
        request.replica_id = self.replica_id
        reason = self._rejection_reason(request)
        if reason:
            request.reject_reason = reason
            self._end(request, RequestState.REJECTED, self.env.now)
            return
        if request.timeout_at_s < INFINITY:
            heapq.heappush(self._timeouts, (request.timeout_at_s, request.request_id, request))
        if self.async_scheduling and self._stepping:
            self._staged.append(request)
            return
        self.waiting.append(request)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self._should_interrupt(request):
            self._interrupting = True
            self.num_interrupts += 1
            self.process.interrupt()

    def _should_interrupt(self, arrival: Request) -> bool:
        in_flight = self.in_flight
        return (in_flight is not None and not self._interrupting
                and self.scheduler.interrupt(in_flight, arrival, self, self.env.now))

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
            if self._timeouts and self._timeouts[0][0] <= env.now:
                self._drop_expired()
            if not self._running and not self.waiting:
                if self._promote_staged():
                    continue
                yield self._sleep(None)
                self._wake = None
                continue
            decision = self.scheduler.schedule(self, env.now)
            promoted = self._promote_staged()
            self._preempt(decision)
            if decision.resume is not None:
                yield from self._resume(decision)
                continue
            if not decision.scheduled and not decision.padding:
                if not decision.preempted and not promoted:
                    yield self._sleep(decision.wake_at)
                    self._wake = None
                continue
            entries, news, contexts, all_decode = self._admit_and_allocate(decision)
            self._sample(len(news), sum(news))
            self.num_engine_steps += 1
            swap_s = self._take_swap_seconds()
            self._stepping = True
            if (self.fast_forward and all_decode and not decision.preempted and not decision.padding
                    and not swap_s and not promoted and len(entries) == len(self._running)):
                steps = yield from run_stretch(self, contexts)
                if steps:
                    self._stepping = False
                    self.num_iterations += steps
                    continue
            shape = BatchShape(news, contexts)
            iteration = Iteration(entries, shape, swap_s + self.cost_model.iteration_time(shape), env.now, began_s=env.now)
            if self._interruptible:
                iteration.boundaries = self._boundaries(shape, swap_s, iteration.total_s)
                yield from self._run(iteration)
            else:
                yield env.timeout(iteration.total_s)
                self._apply(iteration)
                self.num_iterations += 1
            self._stepping = False

    def _promote_staged(self) -> bool:
        """Async scheduling: the step just planned did not see the staged arrivals; the next one will."""
        if not self._staged:
            return False
        self.waiting.extend(self._staged)
        self._staged.clear()
        return True

    def _sleep(self, wake_at: float | None) -> simpy.Event:
        """An event that fires on the next arrival, or at `wake_at` or the next timeout."""
        self._wake = self.env.event()
        if self._timeouts:
            earliest = self._timeouts[0][0]
            wake_at = earliest if wake_at is None else min(wake_at, earliest)
        if wake_at is None:
            return self._wake
        return self._wake | self.env.timeout(max(0.0, wake_at - self.env.now))

    def _boundaries(self, shape: BatchShape, swap_s: float, total_s: float) -> Callable[[], np.ndarray]:
        """The iteration's operator boundaries in work seconds: the swap copies, then each operator."""

        def boundaries() -> np.ndarray:
            ends = self.cost_model.breakdown(shape).boundaries()
            scale = (total_s - swap_s) / ends[-1] if len(ends) and ends[-1] > 0 else 1.0
            return np.concatenate(([swap_s] if swap_s else [], swap_s + ends * scale))

        return boundaries

    def _run(self, iteration: Iteration) -> Generator[simpy.Event, None, None]:
        """Run `iteration` to its end, or to an operator boundary if an arrival interrupts it."""
        env = self.env
        self.in_flight = iteration
        try:
            yield env.timeout(iteration.remaining_s)
        except simpy.Interrupt:
            boundary = iteration.next_boundary_s(env.now)
            if boundary > env.now:
                yield env.timeout(boundary - env.now)
            iteration.suspend_at(env.now)
            self.in_flight = None
            self._interrupting = False
            if iteration.remaining_s > 1e-12:
                self.suspended.append(iteration)
                return
        self.in_flight = None
        self._apply(iteration)
        self.num_iterations += 1

    def _resume(self, decision: ScheduleDecision) -> Generator[simpy.Event, None, None]:
        iteration = decision.resume
        if iteration not in self.suspended:
            raise EngineInvariantError(
                f"replica {self.replica_id} at t={self.env.now:.6f}: scheduler resumed an iteration that is not suspended"
            )
        self.suspended.remove(iteration)  # type: ignore[arg-type]
        iteration.resume_at(self.env.now)  # type: ignore[union-attr]
        self._sample(len(iteration.entries), iteration.shape.num_tokens)  # type: ignore[union-attr]
        yield from self._run(iteration)  # type: ignore[arg-type]

    def _preempt(self, decision: ScheduleDecision) -> None:
        for victim in decision.preempted:
            request: Request = victim  # type: ignore[assignment]
            if request.state is not RequestState.RUNNING or request not in self.running:
                raise EngineInvariantError(
                    f"replica {self.replica_id} at t={self.env.now:.6f}: scheduler preempted {request!r}, "
                    "which is not running"
                )
            self._running.remove(request)
            request.num_preemptions += 1
            mode = self.scheduler.preemption.mode(request, self.host, self.env.now)
            if mode is PreemptionMode.SWAP and self.host.num_free_blocks >= request.num_blocks:
                self.host.allocate(request.request_id, request.num_blocks)
                self._pending_swap_blocks += request.num_blocks
                request.num_swaps += 1
                request.state = RequestState.SWAPPED
            else:
                request.num_computed_tokens = 0
                request.state = RequestState.WAITING
            self.kv.release(request.request_id)
            request.num_blocks = 0
        for victim in reversed(decision.preempted):
            self.waiting.appendleft(victim)  # type: ignore[arg-type]

    def _take_swap_seconds(self) -> float:
        blocks, self._pending_swap_blocks = self._pending_swap_blocks, 0
        return blocks * self.swap_block_s

    def _admit_and_allocate(
        self, decision: ScheduleDecision
    ) -> tuple[list[tuple[Request, int]], tuple[int, ...], tuple[int, ...], bool]:
        """Admit scheduled waiting requests and give every entry its KV slots.

        Returns the entries (an admitted request's new tokens clipped to what is left after its
        prefix-cache hit), the batch shape (padding included), and whether every entry is a
        running request decoding one token."""
        entries: list[tuple[Request, int]] = decision.scheduled  # type: ignore[assignment]
        news = []
        contexts = []
        all_decode = True
        block_size = self.kv.block_size
        running_state = RequestState.RUNNING
        for index, (request, num_new) in enumerate(entries):
            if request.state is not running_state:
                self._admit(request)
                all_decode = False
                left = request.num_tokens - request.num_computed_tokens
                if num_new > left:
                    num_new = left
                    entries[index] = (request, num_new)
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
        for num_new, context in decision.padding:
            news.append(num_new)
            contexts.append(context)
        return entries, tuple(news), tuple(contexts), all_decode

    def _admit(self, request: Request) -> None:
        if request.state not in (RequestState.WAITING, RequestState.SWAPPED):
            raise EngineInvariantError(f"replica {self.replica_id} at t={self.env.now:.6f}: scheduler scheduled {request!r}")
        if self.waiting and self.waiting[0] is request:
            self.waiting.popleft()
        else:
            self.waiting.remove(request)
        if request.state is RequestState.SWAPPED:
            swapped = self.host.release(request.request_id)
            self.kv.allocate(request.request_id, swapped)
            request.num_blocks = swapped
            self._pending_swap_blocks += swapped
        elif self.kv.caches_prefixes and not request.num_computed_tokens:
            hit = self.kv.reuse(request)  # type: ignore[attr-defined]
            request.num_computed_tokens = hit.num_tokens
            request.num_blocks = hit.num_blocks
            request.num_cached_tokens += hit.num_tokens
        request.state = RequestState.RUNNING
        if math.isnan(request.first_scheduled_s):
            request.first_scheduled_s = self.env.now
        self._running.append(request)

    def _sample(self, batch_size: int, batch_tokens: int) -> None:
        self.metrics.sample_replica(
            (self.env.now, self.replica_id, len(self.waiting), len(self._running), batch_size, batch_tokens,
             self.kv.num_used_blocks, self.kv.num_blocks)
        )

    def _apply(self, iteration: Iteration) -> None:
        now = self.env.now
        num_prefill_tokens = 0
        num_decodes = 0
        caching = self.kv.caches_prefixes
        block_size = self.kv.block_size
        for request, num_new in iteration.entries:
            before = request.num_computed_tokens
            computed = before + num_new
            request.num_computed_tokens = computed
            if num_new == 1 and request.num_generated and computed == request.num_tokens:
                num_decodes += 1
            else:
                num_prefill_tokens += num_new
                if caching and request.prefix_hashes:
                    self.kv.register(request, before // block_size, computed // block_size)  # type: ignore[attr-defined]
            if computed == request.num_tokens:
                self._emit_token(request, now)
        if self.metrics.record_iterations:
            self.metrics.add_iteration(
                (self.replica_id, iteration.began_s, now, len(iteration.entries),
                 num_prefill_tokens + num_decodes, num_prefill_tokens, num_decodes)
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
            self.finish(request, now)

    def finish(self, request: Request, now: float) -> None:
        self._running.remove(request)
        self.kv.release(request.request_id)
        request.num_blocks = 0
        request.prefix_keys = None
        self.recently_finished.append(request)
        self._end(request, RequestState.FINISHED, now)

    def _drop_expired(self) -> None:
        """Drop the requests whose timeout has passed before they were ever scheduled."""
        now = self.env.now
        while self._timeouts and self._timeouts[0][0] <= now:
            _, _, request = heapq.heappop(self._timeouts)
            if not math.isnan(request.first_scheduled_s):
                continue  # service began in time
            (self._staged if request in self._staged else self.waiting).remove(request)
            self._end(request, RequestState.DROPPED, request.timeout_at_s)

    def _end(self, request: Request, state: RequestState, at_s: float) -> None:
        request.state = state
        request.finish_s = at_s
        self.on_done(request)
