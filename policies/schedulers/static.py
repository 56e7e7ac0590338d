"""Static batching with padding: the request-level baseline that continuous batching replaced."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from servesim.policies.base import PolicyParams, PreemptionPolicy, SchedulerPolicy
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.registry import register
from servesim.policies.views import ReplicaView, RequestView, blocks_for, computed_on_admission


class StaticParams(PolicyParams):
    batch_size: int = Field(8, ge=1, description="requests per batch")
    max_wait_s: float = Field(
        0.0, ge=0, description="how long the oldest waiting request may wait for a batch to fill before it runs anyway"
    )


@register("scheduler", "static")
class StaticBatchSchedulerPolicy(SchedulerPolicy):
    """Whole batches: prompts padded to the longest, every slot decoding until the last one ends.

    The baseline of Orca (Yu et al., OSDI 2022) and of Prepacking (Zhao et al., "Prepacking: A
    Simple Method for Fast Prefilling and Increased Throughput in Large Language Models",
    2024): a batch is formed from up to `batch_size` waiting requests (or fewer once the oldest
    has waited `max_wait_s`), its prompts run in one iteration padded to the longest, and it
    decodes until its longest output is done; finished requests leave their slots as padding
    and nobody joins mid-batch. Padding costs time (it is in the batch's shape) but holds no KV
    blocks here; a batch is formed only if every member's whole KV fits, so nothing is preempted.
    With prefix caching, prompts are padded to the longest uncached part.
    """

    Params = StaticParams
    params: StaticParams

    def __init__(self, params: StaticParams, preemption: PreemptionPolicy, rng: np.random.Generator | None = None,
                 ) -> None:
        super().__init__(params, preemption, rng)
        self._members: list[RequestView] = []
        self._padded_len = 0
        self._steps = 0

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        if not self._active(replica):
            return self._form(replica, now)
        return self._step()

    def _active(self, replica: ReplicaView) -> bool:
        running = {r.request_id for r in replica.running}
        return any(r.request_id in running for r in self._members)

    def _form(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        waiting = list(replica.waiting)
        if not waiting:
            return ScheduleDecision()
        ready_at = waiting[0].arrival_s + self.params.max_wait_s
        if len(waiting) < self.params.batch_size and now < ready_at:
            return ScheduleDecision(wake_at=ready_at)
        free = replica.kv.num_free_blocks
        members = []
        for request in waiting[: self.params.batch_size]:
            need = blocks_for(request.prompt_tokens + request.output_tokens - 1, replica.kv.block_size)
            if need > free:
                break
            free -= need
            members.append(request)
        if not members:
            return ScheduleDecision()
        self._members = members
        self._padded_len = max(r.num_tokens for r in members)
        self._steps = 0
        new = [r.num_tokens - computed_on_admission(r, replica.kv) for r in members]
        longest = max(new)
        padding = [(longest - n, r.num_tokens) for r, n in zip(members, new, strict=True) if n < longest]
        return ScheduleDecision(scheduled=list(zip(members, new, strict=True)), padding=padding)

    def _step(self) -> ScheduleDecision:
        """One decode of the whole batch: live members decode, finished ones are padded slots."""
        self._steps += 1
        context = self._padded_len + self._steps - 1
        decision = ScheduleDecision()
        for request in self._members:
            if request.num_generated < request.output_tokens and request.num_generated > 0:
                decision.scheduled.append((request, 1))
            else:
                decision.padding.append((1, context))
        return decision
