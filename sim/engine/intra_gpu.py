"""A replica that disaggregates prefill and decode inside one device (Nexus).

Two loops run at the same time, each with its own scheduler and its own batches: the prefill
loop admits waiting requests and computes prompts (chunked as its scheduler chooses), the
decode loop decodes every request whose prompt is done. They share the replica's queues and
its KV pool; each scheduler sees the replica through a view filtered to its phase (the
prefill loop: the waiting queue and the unfinished prefills; the decode loop: the decoding
requests), so neither can schedule or preempt the other's requests. A request moves from one
loop to the other when its last prompt token is computed, and back to the waiting queue if
the decode loop preempts it (recompute). Both loops' iterations run on a `SharedDevice`,
which times them at the split policy's SM partition, with bandwidth contention.

Admission, allocation, preemption, token timestamps and retirement are the plain replica's
(`Replica`); only the loop differs, so fast-forwarding, async scheduling, interrupted
iterations and data-parallel lockstep are off for such a replica. Swap copies to and from host
memory delay the next iteration of whichever loop runs next, as they delay the next step of a
plain replica.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy

from servesim.hwmodels import CostModel
from servesim.policies import SchedulerPolicy
from servesim.policies.views import is_decode
from servesim.sim.engine.bookkeeping import checked_schedule
from servesim.sim.engine.decision_check import DecisionChecker
from servesim.sim.engine.replica import Replica, ReplicaSetup
from servesim.sim.engine.request import Request
from servesim.sim.engine.shared_device import Phase, SharedDevice
from servesim.sim.engine.views import ReplicaView
from servesim.sim.reporting.metrics import MetricsRecorder

_NOTHING_WAITING: deque[Request] = deque()


class PhaseQueues:
    """The replica as one loop's scheduler sees it: its queues filtered to the loop's phase."""

    def __init__(self, replica: IntraGpuReplica, phase: Phase) -> None:
        self._replica = replica
        self.phase = phase
        self.replica_id = replica.replica_id
        self.kv = replica.kv
        self.cost_model = replica.cost_model
        self.suspended: tuple[Any, ...] = ()

    @property
    def running(self) -> list[Request]:
        """Admitted requests of this phase, except those in the other loop's iteration (a swapped-in
        request decoding its last token in the prefill loop is a decode before that iteration ends)."""
        decoding = self.phase is Phase.DECODE
        elsewhere = self._replica.in_other_loop(self.phase)
        return [r for r in self._replica.all_running if is_decode(r) is decoding and id(r) not in elsewhere]

    @property
    def waiting(self) -> deque[Request]:
        return self._replica.waiting if self.phase is Phase.PREFILL else _NOTHING_WAITING

    @property
    def recently_finished(self) -> deque[Request]:
        return self._replica.recently_finished

    @property
    def num_outstanding(self) -> int:
        return self._replica.num_outstanding


@dataclass(eq=False)
class PhaseLoop:
    """One loop's scheduler, its filtered view and decision checker, and its wake-up event."""

    phase: Phase
    scheduler: SchedulerPolicy
    queues: PhaseQueues
    view: ReplicaView
    checker: DecisionChecker
    wake: simpy.Event | None = None
    num_iterations: int = 0
    busy: frozenset[int] = frozenset()
    """`id`s of the requests in this loop's iteration on the device."""


class IntraGpuReplica(Replica):
    """A replica whose prefill and decode loops share one device at a split of its SMs."""

    def __init__(
        self,
        env: simpy.Environment,
        replica_id: int,
        schedulers: tuple[SchedulerPolicy, SchedulerPolicy],
        cost_model: CostModel,
        setup: ReplicaSetup,
        metrics: MetricsRecorder,
        next_arrival_s: Callable[[], float],
        on_done: Callable[[Request], None],
        device: Callable[[Callable[[], int]], SharedDevice],
    ) -> None:
        """`schedulers`: the prefill loop's and the decode loop's; `device(queued_prefill_tokens)`
        builds the shared device, given how to count the prompt tokens still to compute."""
        prefill_scheduler, decode_scheduler = schedulers
        super().__init__(env, replica_id, prefill_scheduler, cost_model, setup, metrics, next_arrival_s, on_done)
        self.fast_forward = False
        self.interruptible = False
        self.async_scheduling = False
        self.device = device(self.queued_prefill_tokens)
        self.prefill = self._phase_loop(Phase.PREFILL, prefill_scheduler)
        self.decode = self._phase_loop(Phase.DECODE, decode_scheduler)
        self.decode_process = env.process(self._run_loop(self.decode))

    def _phase_loop(self, phase: Phase, scheduler: SchedulerPolicy) -> PhaseLoop:
        queues = PhaseQueues(self, phase)
        return PhaseLoop(phase, scheduler, queues, ReplicaView(queues), DecisionChecker(queues, scheduler))  # type: ignore[arg-type]

    @property
    def all_running(self) -> list[Request]:
        """Every admitted request, in either loop."""
        return self._running

    def in_other_loop(self, phase: Phase) -> frozenset[int]:
        """`id`s of the requests in the iteration of the loop other than `phase`'s."""
        return (self.decode if phase is Phase.PREFILL else self.prefill).busy

    def queued_prefill_tokens(self) -> int:
        """Prompt tokens not yet computed: the waiting requests' and the unfinished prefills'."""
        left = sum(r.num_tokens - r.num_computed_tokens for r in self.waiting)
        return left + sum(r.num_tokens - r.num_computed_tokens for r in self._running if not is_decode(r))

    def _loop(self) -> Generator[simpy.Event, Any, None]:
        """The replica's own process (started by the base class) is the prefill loop: arrivals wake it."""
        yield from self._run_loop(self.prefill)

    def _run_loop(self, loop: PhaseLoop) -> Generator[simpy.Event, Any, None]:
        env = self.env
        prefill = loop.phase is Phase.PREFILL
        while True:
            if prefill and self._timeouts and self._timeouts[0][0] <= env.now:
                self._drop_expired()
            if not loop.queues.running and not loop.queues.waiting:
                yield from self._sleep_until_woken(loop, None)
                continue
            decision = checked_schedule(loop.scheduler, loop.view, loop.checker, env.now)
            self._preempt(decision.preempted)
            if decision.preempted and not prefill:
                self._wake_other(loop)  # the victims wait for the prefill loop to recompute them
            if not decision.entries:
                if not decision.preempted:
                    self._note_idle(env.now)
                    yield from self._sleep_until_woken(loop, decision.wake_at)
                continue
            self._idle_decisions = 0
            step = self.prepare_step(decision, promoted=False)
            began = env.now
            loop.busy = frozenset(id(r) for r, _ in step.entries)
            if step.swap_s:
                yield env.timeout(step.swap_s)
            if step.host_copies is not None:
                yield from self.copy_host(step.host_copies)
            yield self.device.run(loop.phase, step.shape)
            loop.busy = frozenset()
            self._apply(step.entries, began)
            self.meter_experts(step.shape)
            loop.num_iterations += 1
            self.num_iterations += 1
            self._wake_other(loop)

    def _sleep_until_woken(self, loop: PhaseLoop, wake_at: float | None) -> Generator[simpy.Event, Any, None]:
        """The prefill loop sleeps as the plain replica does (arrivals wake it); the decode loop
        until the prefill loop hands it a request."""
        if loop.phase is Phase.PREFILL:
            yield from self._idle(wake_at)
            return
        loop.wake = self.env.event()
        yield loop.wake if wake_at is None else loop.wake | self.env.timeout(wake_at - self.env.now)
        loop.wake = None

    def _wake_other(self, loop: PhaseLoop) -> None:
        """After an iteration or a preemption: the other loop may now have work (a finished prompt,
        a recompute to do) or the memory it waited for."""
        if loop.phase is Phase.PREFILL:
            wake = self.decode.wake
        else:
            wake = self._wake
        if wake is not None and not wake.triggered:
            wake.succeed()
