"""The token-budget step with a queue order, optionally preemptive (priority, EDF, SJF, SRPT).

With a non-FCFS order, or any preemptive one, waiting requests are admitted and running ones
served in key order, so victims of a memory shortage come from the worst end. A preemptive
scheduler also displaces: when the best waiting request cannot be admitted for lack of sequence
slots or blocks, running requests with worse keys are preempted for it, worst first, one step
before it is admitted.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable

import numpy as np
from pydantic import Field

from servesim.policies.base import PreemptionPolicy, QueuePolicy
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.queues import FcfsQueuePolicy
from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import ReplicaView, RequestView, blocks_to_admit, computed_on_admission


class OrderedParams(BudgetParams):
    preemptive: bool = Field(False, description="preempt running requests with worse keys for a better waiting one")


class OrderedScheduler(BudgetScheduler):
    """A budget scheduler whose order is a queue policy's key; subclasses build `self.queue`."""

    Params = OrderedParams
    params: OrderedParams
    queue: QueuePolicy

    def __init__(self, params: OrderedParams, preemption: PreemptionPolicy, rng: np.random.Generator | None = None,
                 ) -> None:
        super().__init__(params, preemption, rng)
        self.queue = self.build_queue()
        # Displacement compares keys, so a preemptive scheduler admits in key order too: in FCFS's
        # queue order (preempted first) a displaced request went back in ahead of the one it was
        # displaced for, took the room again, and the two traded places forever.
        self._ordered = self.params.preemptive or not isinstance(self.queue, FcfsQueuePolicy)

    @abstractmethod
    def build_queue(self) -> QueuePolicy:
        """The queue policy whose key orders this scheduler (built from its parameters)."""

    @property
    def stable_under_decode(self) -> bool:
        return self.queue.time_invariant

    @property
    def stable_while_waiting(self) -> bool:
        """Displacement preempts once the best waiting request needs more blocks than are free,
        and free blocks shrink as the running requests decode."""
        return not self.params.preemptive

    def order_running(self, replica: ReplicaView, now: float) -> list[RequestView]:
        if not self._ordered:
            return list(replica.running)
        return sorted(replica.running, key=lambda r: self.queue.key(r, replica, now))

    def order_waiting(self, replica: ReplicaView, now: float) -> Iterable[RequestView]:
        if not self._ordered:
            return replica.waiting
        return sorted(replica.waiting, key=lambda r: self.queue.key(r, replica, now))

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        if self.params.preemptive and replica.waiting and replica.running:
            victims = self._displace(replica, now)
            if victims:
                return ScheduleDecision(preempted=victims)
        return super().schedule(replica, now)

    def _displace(self, replica: ReplicaView, now: float) -> list[RequestView]:
        """Running requests to preempt, worst key first, so that the best waiting request fits.

        Only requests whose key is strictly worse than the head's are taken, and only as many as
        make room for it now (a sequence slot, the blocks of its first chunk and the scheduler's
        own admission test); if no such set exists, none is preempted. Why this cannot cycle:
        waiting requests are admitted in key order and admission stops at the first that does
        not fit, so a displaced request cannot be readmitted before the request it was displaced
        for; while that head waits nothing is admitted, so every displacement shrinks the running
        set until the head fits. A request displaced by another can never displace it back, since
        keys do not change while a request waits and never grow while it runs (SRPT's shrinks; a
        class_empirical prediction moves only as requests finish).
        """
        head = next(iter(self.order_waiting(replica, now)))
        head_key = self.queue.key(head, replica, now)
        kv = replica.kv
        tokens = min(head.num_tokens - computed_on_admission(head, kv), self.params.max_num_batched_tokens)
        need = blocks_to_admit(head, tokens, kv)
        free = kv.num_free_blocks
        running = self.order_running(replica, now)
        victims: list[RequestView] = []
        while (len(running) >= self.params.max_num_seqs or need > free
               or not self.fits_on_admission(head, tokens, free, kv)):
            if not running or not self.queue.key(running[-1], replica, now) > head_key:
                return []
            worst = running.pop()
            victims.append(worst)
            free += kv.num_exclusive_blocks(worst)
        return victims
