"""Orca: iteration-level scheduling with the KV memory of each request reserved up front."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from servesim.policies.base import PreemptionPolicy
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.registry import register
from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import ReplicaView, RequestView, blocks_for


class OrcaParams(BudgetParams):
    chunked_prefill: bool = Field(
        False, description="Orca runs whole prompts; true chunks them (to compare admission rules alone)"
    )
    max_new_tokens: int | None = Field(
        None, ge=1,
        description="output tokens reserved per request (a client's max_tokens); "
        "default: the request's true output length",
    )


@register("scheduler", "orca")
class OrcaSchedulerPolicy(BudgetScheduler):
    """Iteration-level FCFS batching that admits a request only if its whole KV fits, reserved.

    Source: Yu et al., "Orca: A Distributed Serving System for Transformer-Based Generative
    Models", OSDI 2022. Scheduling is per iteration (new requests join, finished ones leave
    between iterations), prompts run whole, and the scheduler reserves a request's maximum KV
    (prompt + max_tokens) when admitting it, so a running request never runs out of memory and
    nothing is ever preempted; the cost is fewer requests in the batch than paged memory allows.
    """

    Params = OrcaParams
    params: OrcaParams

    def __init__(self, params: OrcaParams, preemption: PreemptionPolicy,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__(params, preemption, rng)
        self._reserved = 0

    @property
    def stable_under_decode(self) -> bool:
        return True

    def admission_error(self, request: RequestView) -> str | None:
        """Reserving the true output, nothing is ever preempted and recomputed: only the prompt
        must fit one iteration. A smaller `max_new_tokens` can be outgrown, so then it is the base rule."""
        if self.params.max_new_tokens is not None:
            return super().admission_error(request)
        if self.params.chunked_prefill or request.prompt_tokens <= self.params.max_num_batched_tokens:
            return None
        return (
            f"its prompt of {request.prompt_tokens} tokens exceeds max_num_batched_tokens "
            f"{self.params.max_num_batched_tokens} and chunked_prefill is off"
        )

    def reservation(self, request: RequestView, block_size: int) -> int:
        """Blocks reserved for `request` for its whole life."""
        output = self.params.max_new_tokens or request.output_tokens
        output = max(output, request.num_generated + 1)
        return blocks_for(request.prompt_tokens + output - 1, block_size)

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        block_size = replica.kv.block_size
        self._reserved = sum(self.reservation(r, block_size) for r in replica.running)
        return super().schedule(replica, now)

    def may_admit(self, request: RequestView, num_new: int, decision: ScheduleDecision, replica: ReplicaView,
                  now: float) -> bool:
        reservation = self.reservation(request, replica.kv.block_size)
        if self._reserved + reservation > replica.kv.num_blocks:
            return False
        self._reserved += reservation
        return True
