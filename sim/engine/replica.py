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
from typing import Any

import numpy as np
import simpy
from mypy_extensions import mypyc_attr

from servesim.hwmodels import BatchShape, CostModel, LayerSlice
from servesim.hwmodels.expert_traffic import ExpertTrafficMeter
from servesim.policies import PreemptionMode, SchedulerPolicy
from servesim.policies.contract import contract_violation, policy_raised
from servesim.policies.views import blocks_short, is_decode, new_blocks_needed
from servesim.sim.engine.bookkeeping import (
    admit,
    allocate,
    arrival_rejection,
    preempt,
    record_decoded,
    record_sampled,
    retire,
)
from servesim.sim.engine.decision_check import CheckedDecision, DecisionChecker
from servesim.sim.engine.dp_group import DataParallelGroup, RankPlan
from servesim.sim.engine.host_swap import HostPorts, SwapCopies
from servesim.sim.engine.iteration import Iteration
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.placement import Placement
from servesim.sim.engine.prompt_chunks import run_prompt_chunks
from servesim.sim.engine.request import INFINITY, Request, RequestState
from servesim.sim.engine.stretch import cut_stretch, run_stretch
from servesim.sim.engine.trusted import decision_source, known_decode_order, known_next_batch, known_prompt_chunk
from servesim.sim.engine.views import KvView, ReplicaView
from servesim.sim.reporting.metrics import MetricsRecorder

RECENTLY_FINISHED = 1000
MAX_IDLE_DECISIONS = 100_000
"""Consecutive decisions that compute no token (nothing scheduled or resumed) with no arrival or
drop in between, after which the scheduler is reported as stuck. A legitimate scheduler waits with
`wake_at` once per batching window, or preempts at most every running request once in a row; a
hundred thousand empty decisions in a row is a policy that loops without progress (about a second
of wall time before the error)."""


class PreparedStep:
    """A step decided and prepared (admitted, KV allocated), ready to run. A plain class, not a
    dataclass, so that mypyc compiles its `__init__` (one a step)."""

    __slots__ = ("entries", "shape", "swap_s", "stretchable", "host_copies", "blank_only")

    def __init__(self, entries: list[tuple[Request, int]], shape: BatchShape, swap_s: float, stretchable: bool,
                 host_copies: SwapCopies | None = None, blank_only: bool = False) -> None:
        self.entries = entries
        self.shape = shape
        self.swap_s = swap_s
        """Seconds of swapping in or out before the batch's kernels run."""
        self.stretchable = stretchable
        """Every running request decodes and nothing else happens: it may be fast-forwarded."""
        self.host_copies = host_copies
        """Swap copies to run over the network's host ports before the batch (then `swap_s` is 0)."""
        self.blank_only = blank_only
        """Its stretch may take only blank blocks: evicting a cached one could let a waiting request in."""


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
    lockstep: DataParallelGroup | None = None
    """The data-parallel group whose ranks step together (no fast-forward, no interrupted iterations)."""
    expert_meter: ExpertTrafficMeter | None = None
    """Counts a MoE model's expert weights read and loaded over the iterations applied."""
    placement: Placement = Placement()
    """Its pool, role, hardware, devices and nodes, as routers and transfer policies see them."""
    host_ports: HostPorts | None = None
    """The devices' host ports on the run's network: swaps run over them instead (`sim.engine.host_swap`)."""


@mypyc_attr(allow_interpreted_subclasses=True)  # IntraGpuReplica
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
        self.host_ports = setup.host_ports
        self.metrics = metrics
        self.next_arrival_s = next_arrival_s
        self.on_done = on_done
        self._lockstep = setup.lockstep
        self.expert_meter = setup.expert_meter
        self._rank = setup.lockstep.join() if setup.lockstep is not None else 0
        self.fast_forward = setup.fast_forward and scheduler.stable_under_decode and setup.lockstep is None
        self._fast_forward_needs_empty_queue = not scheduler.stable_while_waiting
        self.interruptible = (type(scheduler).interrupt is not SchedulerPolicy.interrupt
                              and setup.lockstep is None)
        self.async_scheduling = setup.async_scheduling and not self.interruptible
        self.outstanding_tokens = 0
        """Tokens its queued and running requests still have to compute or generate (the sum of
        their `tokens_left`), kept up to date at each arrival, iteration, preemption and end."""
        self.progress_observed = True
        """Whether anyone (the router) reads this replica's progress at an arrival: a decode stretch
        then shows it at every arrival; otherwise it applies its iterations only when it must."""
        self.stretch_interruptible = False
        """A decode stretch waits unobserved: an arrival here cuts it short (`sim.engine.stretch.cut_stretch`)."""
        self._staged: list[Request] = []
        """Arrivals during the running step: with async scheduling the next step was planned without them."""
        self._unseen: list[Request] = []
        """Arrivals queued since the loop last decided: it takes them in at its next decision."""
        self._stepping = False
        self.waiting: deque[Request] = deque()
        self._running: list[Request] = []
        self.suspended: list[Iteration] = []
        self.recently_finished: deque[Request] = deque(maxlen=RECENTLY_FINISHED)
        self.in_flight: Iteration | None = None
        self._interrupting = False
        self._wake: simpy.Event | None = None
        self._pending_swap_in = 0
        self._pending_swap_out = 0
        self._timeouts: list[tuple[float, int, Request]] = []
        """(timeout, id, request) of queued requests that may give up, earliest first."""
        self.gaps = metrics.gaps
        """Where inter-token gaps go: a stepped iteration's (`add_step`), a stretch's as arrays shared by its batch."""
        self._series_rows = metrics.replica_rows
        self.num_iterations = 0
        self.num_engine_steps = 0
        self.num_interrupts = 0
        self.placement = setup.placement
        self.num_inbound = 0
        """Requests on their way here from a prefill replica (`sim.engine.disaggregation`)."""
        self._receives_kv = False
        """Some requests arrived with their KV (`receive`): they wait holding device blocks."""
        self.idle_s = 0.0
        """Simulated seconds spent waiting for work (the current wait excluded)."""
        self._idle_since = INFINITY
        self.on_step: Callable[[list[tuple[Request, int]], float, float], None] | None = None
        """Prefill pools: told of each step's (entries, start, seconds) as it starts (layerwise transfers)."""
        self.on_prefilled: Callable[[Request], None] | None = None
        """Prefill pools: takes a request whose prompt is done, which leaves the batch holding its KV."""
        self.on_preempted: Callable[[list[Request]], None] | None = None
        """Prefill pools: told of the requests each decision preempts (their layerwise transfers stop)."""
        self.on_decision: Callable[[], None] | None = None
        """Decode pools: called before each decision, when this replica's free blocks are exact."""
        self.on_empty: Callable[[], None] | None = None
        """Dynamic roles: called whenever this replica runs out of work, before it waits for more."""
        self.view = ReplicaView(self)
        self._host_view = KvView(self.host)
        self._decide = decision_source(self, scheduler, DecisionChecker(self, scheduler))
        self._next_batch = known_next_batch(scheduler, self) if self.fast_forward else None
        self._decode_order = known_decode_order(scheduler, self) if self._next_batch is not None else None
        self.prompt_chunk = known_prompt_chunk(scheduler, self) if self.fast_forward else None
        self._idle_decisions = 0
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
        return len(self.waiting) + len(self._running) + len(self._staged) + self.num_inbound

    def submit(self, request: Request) -> None:
        """Take an arriving request: queue it, or reject it if it could never be served here."""
        request.replica_id = self.replica_id
        reason = arrival_rejection(request, self.max_model_len, self.kv, self.scheduler, self.env.now)
        if reason:
            request.reject_reason = reason
            self._end(request, RequestState.REJECTED, self.env.now)
            return
        self.outstanding_tokens += request.tokens_left
        self._idle_decisions = 0
        if request.timeout_at_s < INFINITY:
            heapq.heappush(self._timeouts, (request.timeout_at_s, request.request_id, request))
        self._enqueue(request)

    def receive(self, request: Request) -> None:
        """Take a request whose KV arrived from a prefill replica: it waits, holding its blocks, to decode."""
        request.replica_id = self.replica_id
        request.state = RequestState.WAITING
        self.outstanding_tokens += request.tokens_left
        self._idle_decisions = 0
        self._receives_kv = True
        self._enqueue(request)

    def notify(self) -> None:
        """Bring this replica to its next decision now: wake it, or cut its fast-forwarded stretch."""
        if self.stretch_interruptible:
            cut_stretch(self)
        elif self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _enqueue(self, request: Request) -> None:
        if self.stretch_interruptible:
            cut_stretch(self)
        if self.async_scheduling and self._stepping:
            self._staged.append(request)
            return
        self.waiting.append(request)
        self._unseen.append(request)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self._should_interrupt(request):
            self._interrupting = True
            self.num_interrupts += 1
            self.process.interrupt()

    def _should_interrupt(self, arrival: Request) -> bool:
        in_flight = self.in_flight
        if in_flight is None or self._interrupting:
            return False
        now = self.env.now
        interrupt: Callable[..., object] = self.scheduler.interrupt  # its answer is checked below, not on return
        try:
            answer = interrupt(in_flight.view, arrival.view, self.view, now)
        except Exception as exc:
            raise policy_raised(self.scheduler, "scheduler.interrupt", now, exc) from exc
        if not isinstance(answer, bool):
            raise contract_violation(self.scheduler, "scheduler.interrupt", now,
                                 f"returned {answer!r}; it must return True or False")
        return answer

    def _loop(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        while True:
            if self.on_decision is not None:
                self.on_decision()
            if self._timeouts and self._timeouts[0][0] <= env.now:
                self._drop_expired()
            if not self._running and not self.waiting:
                if self.promote_staged():
                    continue
                if self.on_empty is not None:
                    self.on_empty()
                yield from self._idle(None)
                continue
            self._pick_up(self._unseen)
            self._unseen.clear()
            if self._receives_kv:
                self._resident_first()
            decision = self._decide(env.now)
            promoted = self.promote_staged()
            self._preempt(decision.preempted)
            if decision.resume is not None:
                self._idle_decisions = 0
                yield from self._resume(decision.resume)
                continue
            if not decision.entries:
                if not promoted:
                    self._note_idle(env.now)
                if not decision.padding:
                    if not decision.preempted and not promoted:
                        yield from self._idle(decision.wake_at)
                    continue
            else:
                self._idle_decisions = 0
            step = self.prepare_step(decision, promoted)
            self._stepping = True
            yield from self.run_step(step)
            self._stepping = False

    def _resident_first(self) -> None:
        """Keep the waiting requests that hold device blocks (their KV arrived from a prefill
        replica) ahead of those that hold none, each in its order. A preempted request goes back
        to the front of the queue; behind it, received requests could hold the very blocks it
        needs, and with nothing running none would ever be freed. A received request needs no
        new block for its first decode step (its reservation covers it), so it can always go."""
        waiting = self.waiting
        holds_none = False
        for request in waiting:
            if not request.num_blocks:
                holds_none = True
            elif holds_none:
                ordered = sorted(waiting, key=lambda queued: not queued.num_blocks)
                waiting.clear()
                waiting.extend(ordered)
                return

    def prepare_step(self, decision: CheckedDecision, promoted: bool) -> PreparedStep:
        """The checked decision made ready to run: admissions, KV blocks and the batch's shape."""
        evicted = self.kv.num_evicted
        entries, news, contexts, admitted = self._admit_and_allocate(decision)
        slices = self._slices(decision)
        sliced = decision.layer_slices
        if slices and sliced:  # their entries computed tokens too
            self.sample(len(news) + len(slices), sum(news) + sum(n for r, n in entries if r.request_id in sliced))
        else:
            self.sample(len(news), sum(news))
        self.num_engine_steps += 1
        swap_s, host_copies = self._take_swaps()
        stretchable = (self.fast_forward and not admitted and not decision.preempted and not decision.padding
                       and not swap_s and host_copies is None and not promoted and not slices
                       and len(entries) == len(self._running)
                       and sum(news) == len(news)  # a decode computes one token: a prefill chunk ends it here
                       and all(is_decode(request) for request, _ in entries))
        blank_only = False
        if stretchable and self.waiting:
            if self._fast_forward_needs_empty_queue:
                stretchable = False
            elif self._waiting_reuse_unreferenced():  # exact only while no cached block is evicted
                stretchable = self.kv.num_evicted == evicted
                blank_only = True
        return PreparedStep(entries, BatchShape(news, contexts, slices), swap_s, stretchable, host_copies, blank_only)

    def _waiting_reuse_unreferenced(self) -> bool:
        """Whether a waiting request would reuse cached blocks that nobody references. Evicting one
        of them shortens its hit, and a shorter hit reclaims fewer blocks, so admitting it may then
        take fewer free blocks than the decision just made saw: it may fit a few decode steps later
        though it did not now. Blank blocks are taken before cached ones, so a stretch is exact
        while the decodes take only blank blocks, from the decision on (`PreparedStep.blank_only`)."""
        kv = self.kv
        return kv.caches_prefixes and any(kv.cached_prefix(request).num_reclaimed for request in self.waiting)

    def run_step(self, step: PreparedStep) -> Generator[simpy.Event, Any, None]:
        """Run a prepared step, then each step after it whose decision is known (`_known_step`)."""
        while True:
            all_decode = yield from self._run_prepared(step)
            if self._next_batch is None:
                return
            known = self._known_step(all_decode)
            if known is None:
                return
            step = known

    def _run_prepared(self, step: PreparedStep) -> Generator[simpy.Event, Any, bool]:
        """Run one prepared step: a fast-forwarded stretch if it may be one, else one iteration.
        Returns True when every running request is certain to decode next (after a stretch, or
        a prompt's chunks run to its end); False when that is not known."""
        env = self.env
        if step.stretchable:
            steps = yield from run_stretch(self, [request for request, _ in step.entries], step.shape.context_lens,
                                           step.blank_only)
            if steps:
                self.num_iterations += steps
                return True
        elif self.prompt_chunk is not None:
            steps = yield from run_prompt_chunks(self, step)
            if steps:
                self.num_iterations += steps
                return is_decode(step.entries[-1][0])
        began = env.now
        if step.host_copies is not None:
            yield from self.copy_host(step.host_copies)
        if self._lockstep is not None:
            yield from self._lockstep.step(self._rank, RankPlan(step.shape, step.swap_s))
            self._apply(step.entries, began)
            self.meter_experts(step.shape)
            self.num_iterations += 1
            return False
        total_s = step.swap_s + self.cost_model.iteration_time(step.shape)
        if self.on_step is not None:
            self.on_step(step.entries, env.now, total_s)
        if self.interruptible:
            iteration = Iteration(step.entries, step.shape, total_s, env.now, began_s=began)
            iteration.boundaries = self._boundaries(step.shape, step.swap_s, total_s)
            yield from self._run(iteration)
        else:
            yield env.timeout(total_s)
            self._apply(step.entries, began)
            self.meter_experts(step.shape)
            self.num_iterations += 1
        return False

    def copy_host(self, copies: SwapCopies) -> Generator[simpy.Event, Any, None]:
        """A step's swap copies over the network's host ports (they precede its kernels)."""
        assert self.host_ports is not None  # a step has host copies only with host ports (`_take_swaps`)
        yield from self.host_ports.copy(copies)

    def _known_step(self, all_decode: bool) -> PreparedStep | None:
        """The next step, prepared without asking the scheduler, when its decision is certain
        (`sim.engine.trusted.known_next_batch`): each running request computes what it has left,
        within the token budget, and gets its blocks. None: the loop must decide. Nothing may
        wait (arrivals staged during the step may: the decision would not see them either, and
        they are promoted as it would promote them), the router must not read progress (a stretch
        through a finish then ends as before) and no hook may act before a decision. Not a
        decision: the engine's step count does not grow. When `all_decode` (every running
        request decodes next), the batch is each with one token (`_known_decodes`)."""
        if (self.waiting or self._unseen or self.progress_observed
                or self.on_decision is not None or self._pending_swap_in or self._pending_swap_out):
            return None
        now = self.env.now
        if self._timeouts and self._timeouts[0][0] <= now:
            self._drop_expired()  # nothing waits: only entries of requests scheduled since go
        if not self._running:
            return None
        if all_decode:
            return self._known_decodes(now)
        assert self._next_batch is not None  # only asked when the scheduler is trusted
        entries = self._next_batch(now)
        if entries is None:
            return None
        block_size = self.kv.block_size
        grows = []
        news = []
        contexts = []
        decodes_only = True
        for request, num_new in entries:  # one pass: blocks, shape, and whether all decode
            need = new_blocks_needed(request, num_new, block_size)
            if need:
                grows.append((request, need))
            news.append(num_new)
            contexts.append(request.num_computed_tokens)
            if decodes_only and not (num_new == 1 and is_decode(request)):
                decodes_only = False
        return self._prepare_known(entries, grows, BatchShape(tuple(news), tuple(contexts), ()), decodes_only, now)

    def _known_decodes(self, now: float) -> PreparedStep | None:
        """`_known_step` when every running request decodes next: the batch is each in the
        scheduler's order with one token (`sim.engine.trusted.known_decode_order`), a stretch
        unless staged arrivals are promoted. One lean pass for the blocks, none asking what
        each request computes."""
        assert self._decode_order is not None  # only asked when the scheduler is trusted
        order = self._decode_order(now)
        if order is None:
            return None
        contexts = tuple([request.num_computed_tokens for request in order])
        grows = blocks_short(order, contexts, 1, self.kv.block_size)
        return self._prepare_known([(request, 1) for request in order], grows,
                                   BatchShape((1,) * len(order), contexts, ()), True, now)

    def _prepare_known(self, entries: list[tuple[Request, int]], grows: list[tuple[Request, int]],
                       shape: BatchShape, decodes_only: bool, now: float) -> PreparedStep | None:
        """A known batch made ready to run, as a decision's would be: staged arrivals promoted,
        each of `grows` (an entry and the blocks it needs) given its blocks, the step sampled; a
        stretch if it is `decodes_only` and nothing was promoted. None when the blocks do not fit
        (the scheduler would preempt)."""
        kv = self.kv
        if sum([need for _, need in grows]) > kv.num_free_blocks:
            return None
        promoted = self.promote_staged()
        for request, need in grows:
            allocate(request, need, kv, self.scheduler, now)
        self._idle_decisions = 0
        self.sample(shape.num_entries, shape.num_tokens)
        return PreparedStep(entries, shape, 0.0, decodes_only and not promoted)

    def has_arrivals(self) -> bool:
        """Requests the scheduler has not seen wait: queued, not yet taken in, or staged."""
        return bool(self.waiting or self._unseen or self._staged)

    def prompt_chunks_unobserved(self) -> bool:
        """Whether a prompt's known chunks may run without the decodes beside them showing their
        tokens at each step (`sim.engine.prompt_chunks`): a trusted scheduler, nothing new waiting,
        and no router, interruption or hook that would look in between."""
        return not (self.prompt_chunk is None or self.progress_observed or self.interruptible
                    or self.on_step is not None or self.on_prefilled is not None
                    or self.on_decision is not None or self.has_arrivals())

    def promote_staged(self) -> bool:
        """Async scheduling: the step just planned did not see the staged arrivals; the next one will."""
        if not self._staged:
            return False
        self._pick_up(self._staged)
        self.waiting.extend(self._staged)
        self._staged.clear()
        return True

    def _pick_up(self, arrivals: list[Request]) -> None:
        """Stamp `arrivals` as taken in now (`Request.picked_up_s`)."""
        now = self.env.now
        for request in arrivals:
            request.picked_up_s = now

    def _note_idle(self, now: float) -> None:
        self._idle_decisions += 1
        if self._idle_decisions > MAX_IDLE_DECISIONS:
            raise contract_violation(
                self.scheduler, "scheduler.schedule", now,
                f"stuck: {MAX_IDLE_DECISIONS:,} decisions in a row computed no token with nothing arriving "
                f"({len(self.waiting)} waiting, {len(self._running)} running, {self.kv.num_free_blocks} of "
                f"{self.kv.num_blocks} KV blocks free); it must schedule work or sleep until an arrival (wake_at=None)",
            )

    def check_drained(self) -> None:
        """At the end of the run nothing may be left: else the scheduler stopped scheduling for good."""
        if self.waiting or self._running:
            raise contract_violation(
                self.scheduler, "scheduler.schedule", self.env.now,
                f"stuck: it scheduled nothing and asked for no wake-up with {len(self.waiting)} waiting and "
                f"{len(self._running)} running requests and no arrival left ({self.kv.num_free_blocks} of "
                f"{self.kv.num_blocks} KV blocks free), so the run could never finish; its parameters may never admit "
                "them with this KV pool (e.g. a reservation larger than the pool), or the policy has a bug",
            )

    def _idle(self, wake_at: float | None) -> Generator[simpy.Event, Any, None]:
        """Sleep until an arrival, `wake_at` or the next timeout; a lockstep rank then waits for the step boundary."""
        self._idle_since = self.env.now
        if self._lockstep is None:
            yield self._sleep(wake_at)
        else:
            yield from self._lockstep.rest(self._sleep(wake_at))
        self.idle_s += self.env.now - self._idle_since
        self._idle_since = INFINITY
        self._wake = None

    def busy_s(self) -> float:
        """Simulated seconds so far that this replica had work (stepping or swapping), not waiting for it."""
        idle_now = self.env.now - self._idle_since if self._idle_since < INFINITY else 0.0
        return self.env.now - self.idle_s - idle_now

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

    def _run(self, iteration: Iteration) -> Generator[simpy.Event, Any, None]:
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
        self._apply(iteration.entries, iteration.began_s)
        self.meter_experts(iteration.shape)
        self.num_iterations += 1

    def _resume(self, iteration: Iteration) -> Generator[simpy.Event, Any, None]:
        self.suspended.remove(iteration)
        iteration.resume_at(self.env.now)
        self.sample(len(iteration.entries), iteration.shape.num_tokens)
        yield from self._run(iteration)

    def _preemption_mode(self, request: Request) -> PreemptionMode:
        preemption, now = self.scheduler.preemption, self.env.now
        try:
            mode = preemption.mode(request.view, self._host_view, now)
        except Exception as exc:
            raise policy_raised(preemption, "preemption.mode", now, exc) from exc
        if not isinstance(mode, PreemptionMode):
            raise contract_violation(preemption, "preemption.mode", now,
                                 f"returned {mode!r}; it must return a PreemptionMode (RECOMPUTE or SWAP)")
        return mode

    def _preempt(self, preempted: list[Request]) -> None:
        if not preempted:
            return
        left_before = sum(request.tokens_left for request in preempted)
        self._pending_swap_out += preempt(preempted, self._running, self.waiting, self.kv, self.host,
                                          self._preemption_mode)
        self.outstanding_tokens += sum(request.tokens_left for request in preempted) - left_before
        if self.on_preempted is not None:
            self.on_preempted(preempted)

    def _take_swaps(self) -> tuple[float, SwapCopies | None]:
        """The copies pending for the next step: priced in seconds at the host link's rate, or (with
        a network) to run over the devices' host ports."""
        blocks_in, blocks_out = self._pending_swap_in, self._pending_swap_out
        if not blocks_in and not blocks_out:
            return 0.0, None
        self._pending_swap_in = self._pending_swap_out = 0
        if self.host_ports is None:
            return (blocks_in + blocks_out) * self.swap_block_s, None
        return 0.0, SwapCopies(blocks_in, blocks_out)

    def _admit_and_allocate(
        self, decision: CheckedDecision
    ) -> tuple[list[tuple[Request, int]], tuple[int, ...], tuple[int, ...], bool]:
        """Admit scheduled waiting requests and give every entry its KV slots.

        Returns the entries (an admitted request's new tokens clipped to what is left after its
        prefix-cache hit), the batch shape (padding included), and whether any was admitted."""
        entries = decision.entries
        admitted = False
        kv = self.kv
        block_size = kv.block_size
        running_state = RequestState.RUNNING
        for index, (request, num_new) in enumerate(entries):
            if request.state is not running_state:
                self._admit(request)
                admitted = True
                left = request.num_tokens - request.num_computed_tokens
                if num_new > left:
                    num_new = left
                    entries[index] = (request, num_new)
            need = new_blocks_needed(request, num_new, block_size)
            if need:
                allocate(request, need, kv, self.scheduler, self.env.now)
        sliced = decision.layer_slices
        priced = [entry for entry in entries if entry[0].request_id not in sliced] if sliced else entries
        news = [num_new for _, num_new in priced]  # a layer slice is priced as such
        contexts = [request.num_computed_tokens for request, _ in priced]
        for num_new, context in decision.padding:
            news.append(num_new)
            contexts.append(context)
        return entries, tuple(news), tuple(contexts), admitted

    @staticmethod
    def _slices(decision: CheckedDecision) -> tuple[LayerSlice, ...]:
        """The decision's layer slices in entry order (layered prefill)."""
        sliced = decision.layer_slices
        if not sliced:
            return ()
        return tuple(sliced[request.request_id] for request, _ in decision.entries if request.request_id in sliced)

    def _admit(self, request: Request) -> None:
        """Admission, with what only the simulator models: swapping in, reusing cached prefixes."""
        if request.state is RequestState.SWAPPED:
            swapped = self.host.release(request.request_id)
            allocate(request, swapped, self.kv, self.scheduler, self.env.now)
            self._pending_swap_in += swapped
        elif self.kv.caches_prefixes and not request.num_computed_tokens:
            hit = self.kv.reuse(request)  # type: ignore[attr-defined]
            request.num_computed_tokens = hit.num_tokens
            self.outstanding_tokens -= hit.num_tokens
            request.num_blocks = hit.num_blocks
            request.num_cached_tokens += hit.num_tokens
        admit(request, self.waiting, self._running, self.env.now)

    def sample(self, batch_size: int, batch_tokens: int) -> None:
        """The replica's state as a step of `batch_size` entries and `batch_tokens` tokens starts."""
        self._series_rows.append(
            (self.env.now, self.replica_id, len(self.waiting), len(self._running), batch_size, batch_tokens,
             self.kv.num_used_blocks, self.kv.num_blocks)
        )
        self.gaps.spill_if_full()  # once per engine step: bounds the step gaps the replica adds

    def meter_experts(self, shape: BatchShape) -> None:
        """Count a MoE model's expert weights read (and loaded) by an iteration just applied."""
        if self.expert_meter is not None:
            self.expert_meter.add(shape)

    def _apply(self, entries: list[tuple[Request, int]], began_s: float) -> None:
        """The iteration that began at `began_s` ended now: each entry computed its tokens."""
        now = self.env.now
        num_prefill_tokens = 0
        num_decodes, gaps = self._apply_leading_decodes(entries, now)
        caching = self.kv.caches_prefixes
        block_size = self.kv.block_size
        for request, num_new in entries[num_decodes:] if num_decodes else entries:
            if is_decode(request):
                num_decodes += 1
            else:
                num_prefill_tokens += num_new
                if caching and request.prefix_hashes:
                    before = request.num_computed_tokens
                    self.kv.register(request, before // block_size, (before + num_new) // block_size)  # type: ignore[attr-defined]
            request.num_computed_tokens += num_new
            if request.num_computed_tokens == request.num_tokens:
                self.token_sampled(request, now, gaps)
        if gaps:
            self.gaps.add_step(gaps)
        self.outstanding_tokens -= num_prefill_tokens + num_decodes
        if self.metrics.record_iterations:
            self.metrics.add_iteration(
                (self.replica_id, began_s, now, len(entries),
                 num_prefill_tokens + num_decodes, num_prefill_tokens, num_decodes)
            )

    def _apply_leading_decodes(self, entries: list[tuple[Request, int]], now: float) -> tuple[int, list[float]]:
        """The decodes that open the batch (usually all but its prompt chunks), applied at once as
        a stretch applies its iterations (`record_decoded`, not `token_sampled` for each), then
        those done finished in their order; returns how many and their token gaps. With a hand-off
        after prefill, none: each entry goes through `token_sampled`."""
        if self.on_prefilled is not None:
            return 0, []
        decodes = []
        for request, num_new in entries:
            if num_new != 1 or not is_decode(request):
                break
            decodes.append(request)
        if not decodes:
            return 0, []
        gaps, finished = record_decoded(decodes, 1, now, now, 0.0)
        tokens = self.metrics.tokens
        if tokens is not None:
            for request in decodes:
                tokens.add(request.request_id, now)
        for request in finished:
            self.finish(request, now)
        return len(decodes), gaps

    def token_sampled(self, request: Request, now: float, gaps: list[float]) -> None:
        """`request` computed all its tokens in the iteration that ended `now`: it samples one (its
        gap since the last goes to `gaps`), then finishes, leaves for a decode replica, or decodes."""
        done = record_sampled(request, 1)
        if request.num_generated == 1:
            request.first_token_s = now
        else:
            gap = now - request.last_token_s
            gaps.append(gap)
            if gap > request.max_tbt_s:
                request.max_tbt_s = gap
        request.last_token_s = now
        if self.metrics.tokens is not None:
            self.metrics.tokens.add(request.request_id, now)
        if done:
            self.finish(request, now)
        elif self.on_prefilled is not None:
            self._running.remove(request)
            request.state = RequestState.TRANSFERRING
            self.outstanding_tokens -= request.tokens_left
            self.on_prefilled(request)

    def finish(self, request: Request, now: float) -> None:
        self.outstanding_tokens -= request.tokens_left
        retire(request, self._running, self.kv, self.recently_finished, now)
        self.on_done(request)

    def next_timeout_s(self) -> float:
        """When the earliest queued request may give up (an entry may be stale: it only comes early)."""
        return self._timeouts[0][0] if self._timeouts else INFINITY

    def _drop_expired(self) -> None:
        """Drop the requests whose timeout has passed before they were ever scheduled."""
        now = self.env.now
        while self._timeouts and self._timeouts[0][0] <= now:
            _, _, request = heapq.heappop(self._timeouts)
            if not math.isnan(request.first_scheduled_s):
                continue  # service began in time
            (self._staged if request in self._staged else self.waiting).remove(request)
            self._idle_decisions = 0
            self.outstanding_tokens -= request.tokens_left
            self._end(request, RequestState.DROPPED, request.timeout_at_s)

    def _end(self, request: Request, state: RequestState, at_s: float) -> None:
        request.state = state
        request.finish_s = at_s
        self.on_done(request)
