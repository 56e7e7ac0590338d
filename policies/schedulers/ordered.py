"""The token-budget step with a queue order, optionally preemptive (priority, EDF, SJF, SRPT).

With a non-FCFS order, waiting requests are admitted and running ones served in key order, so
victims of a memory shortage come from the worst end. A preemptive scheduler also displaces:
when the best waiting request cannot be admitted for lack of sequence slots or blocks, running
requests with worse keys are preempted for it, worst first, one step before it is admitted.
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
        self._ordered = not isinstance(self.queue, FcfsQueuePolicy)

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
        """Running requests to preempt so that the best waiting request fits (worse keys only)."""
        head = next(iter(self.order_waiting(replica, now)))
        head_key = self.queue.key(head, replica, now)
        kv = replica.kv
        tokens = min(head.num_tokens - computed_on_admission(head, kv), self.params.max_num_batched_tokens)
        need = blocks_to_admit(head, tokens, kv)
        free = kv.num_free_blocks
        running = self.order_running(replica, now)
        victims: list[RequestView] = []
        while running and (len(running) >= self.params.max_num_seqs or need > free):
            worst = running[-1]
            if not self.queue.key(worst, replica, now) > head_key:
                return []
            victims.append(running.pop())
            free += kv.num_exclusive_blocks(worst)
        return victims
