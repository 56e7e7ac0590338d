"""The token-budget step that most schedulers share, with the hooks they differ in.

One step, as in vLLM v1: every request computes the tokens it has not computed yet, under a
token budget (`max_num_batched_tokens`), a sequence budget (`max_num_seqs`) and the free KV
blocks. Phase one serves running requests (in `order_running`), preempting victims chosen by
the preemption policy when blocks run out; phase two admits waiting requests (in
`order_waiting`) while budgets last and `may_admit` agrees, stopping at the first that does not
fit (no request overtakes the head of the queue); nothing is admitted in a step that preempted.
"""
from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from servesim.policies.base import PolicyParams, SchedulerPolicy
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.views import (
    KvView,
    ReplicaView,
    RequestView,
    blocks_to_admit,
    computed_on_admission,
    new_blocks_needed,
)

DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
"""vLLM's defaults; a scheduler without these budgets is sized for memory as if it had them."""


class BudgetParams(PolicyParams):
    max_num_seqs: int = Field(DEFAULT_MAX_NUM_SEQS, ge=1, description="most requests running at once")
    max_num_batched_tokens: int = Field(
        DEFAULT_MAX_NUM_BATCHED_TOKENS, ge=1, description="token budget of one iteration"
    )
    chunked_prefill: bool = Field(True, description="split prompts larger than the remaining budget into chunks")


class BudgetScheduler(SchedulerPolicy):
    """Base of the token-budget schedulers; subclasses override the ordering and admission hooks."""

    Params = BudgetParams
    params: BudgetParams

    def admission_error(self, request: RequestView) -> str | None:
        if self.params.chunked_prefill:
            return None
        longest = request.prompt_tokens + request.output_tokens - 1
        if longest > self.params.max_num_batched_tokens:
            return (
                f"needs up to {longest} tokens in one iteration (prompt plus recompute after preemption) "
                f"but max_num_batched_tokens is {self.params.max_num_batched_tokens} and chunked_prefill is off"
            )
        return None

    def order_running(self, replica: ReplicaView, now: float) -> list[RequestView]:
        """The order running requests are served (and preempted from the end of): admission order."""
        return list(replica.running)

    def order_waiting(self, replica: ReplicaView, now: float) -> Iterable[RequestView]:
        """The order waiting requests are admitted in: the queue's (FCFS, preempted first)."""
        return replica.waiting

    def fits_on_admission(self, request: RequestView, num_new: int, free: int, kv: KvView) -> bool:
        """Whether admitting `request` for `num_new` tokens leaves enough free blocks (beyond the
        chunk's own, which the caller checks); every budget scheduler admits on the chunk alone."""
        return True

    def may_admit(self, request: RequestView, num_new: int, decision: ScheduleDecision, replica: ReplicaView,
                  now: float) -> bool:
        """Extra admission test beyond the budgets (reservations, predicted memory)."""
        return True

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        decision = ScheduleDecision()
        running = self.order_running(replica, now)
        budget, free = self._schedule_running(replica, running, decision, now)
        if replica.waiting and not decision.preempted:
            self._admit_waiting(replica, self.order_waiting(replica, now), decision, budget, free, len(running), now)
        return decision

    def _schedule_running(
        self, replica: ReplicaView, running: list[RequestView], decision: ScheduleDecision, now: float
    ) -> tuple[int, int]:
        """Give each running request its tokens; preempt when blocks run out. Returns what is left."""
        scheduled = decision.scheduled
        budget = self.params.max_num_batched_tokens
        kv = replica.kv
        free = kv.num_free_blocks
        block_size = kv.block_size
        # A victim comes from running[index:]: the loop stops if it is the request itself, and
        # iterating on past the removal of a later one visits the rest in order.
        for index, request in enumerate(running):
            if budget <= 0:
                break
            num_new = request.num_tokens - request.num_computed_tokens
            if num_new > budget:
                num_new = budget
            need = new_blocks_needed(request, num_new, block_size)
            if need > free:
                preempted_itself = False
                while need > free and not preempted_itself:
                    victim = self.preemption.select_victim(running[index:], now)
                    running.remove(victim)
                    decision.preempted.append(victim)
                    free += kv.num_exclusive_blocks(victim)
                    preempted_itself = victim is request
                if preempted_itself:
                    break
            if need > 0:
                free -= need
            budget -= num_new
            scheduled.append((request, num_new))
        return budget, free

    def _admit_waiting(
        self, replica: ReplicaView, candidates: Iterable[RequestView], decision: ScheduleDecision, budget: int,
        free: int, num_running: int, now: float,
    ) -> None:
        """Admit `candidates` in order while budgets last; stop at the first that does not fit."""
        chunked = self.params.chunked_prefill
        max_seqs = self.params.max_num_seqs
        kv = replica.kv
        for request in candidates:
            if budget <= 0 or num_running >= max_seqs:
                return
            num_new = request.num_tokens - computed_on_admission(request, kv)
            if num_new > budget:
                if not chunked:
                    return
                num_new = budget
            need = blocks_to_admit(request, num_new, kv)
            if need > free or not self.fits_on_admission(request, num_new, free, kv) \
                    or not self.may_admit(request, num_new, decision, replica, now):
                return
            free -= need
            budget -= num_new
            num_running += 1
            decision.scheduled.append((request, num_new))
