"""vLLM's default scheduler, in its v1 unified token-budget formulation."""
from __future__ import annotations

from pydantic import Field

from policies.base import PolicyParams, SchedulerPolicy
from policies.decisions import ScheduleDecision
from policies.registry import register
from policies.views import ReplicaView, RequestView, new_blocks_needed


class VllmParams(PolicyParams):
    max_num_seqs: int = Field(256, ge=1, description="most requests running at once")
    max_num_batched_tokens: int = Field(8192, ge=1, description="token budget of one iteration")
    chunked_prefill: bool = Field(True, description="split prompts larger than the remaining budget into chunks")


@register("scheduler", "vllm")
class VllmSchedulerPolicy(SchedulerPolicy):
    """FCFS continuous batching under token, sequence and memory budgets (vLLM v1).

    Source: Kwon et al., "Efficient Memory Management for Large Language Model Serving with
    PagedAttention", SOSP 2023, and the vLLM v1 scheduler's formulation, in which every request
    simply computes the tokens it has not computed yet. Each iteration first serves running
    requests in admission order (decodes and unfinished prefill chunks), preempting from the
    newest end when KV blocks run out, then admits waiting requests in FCFS order while budget,
    sequence slots and blocks remain; no request is admitted in an iteration that preempted.
    """

    Params = VllmParams
    params: VllmParams

    @property
    def stable_under_decode(self) -> bool:
        return True

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

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        decision = ScheduleDecision()
        scheduled = decision.scheduled
        budget = self.params.max_num_batched_tokens
        free = replica.kv.num_free_blocks
        block_size = replica.kv.block_size
        running = list(replica.running)
        index = 0
        while index < len(running) and budget > 0:
            request = running[index]
            computed = request.num_computed_tokens
            num_new = request.num_tokens - computed
            if num_new > budget:
                num_new = budget
            need = -(-(computed + num_new) // block_size) - request.num_blocks
            preempted_itself = False
            while need > free and not preempted_itself:
                victim = self.preemption.select_victim(running[index:], now)
                running.remove(victim)
                decision.preempted.append(victim)
                free += victim.num_blocks
                preempted_itself = victim is request
            if preempted_itself:
                break
            if need > 0:
                free -= need
            budget -= num_new
            scheduled.append((request, num_new))
            index += 1
        if decision.preempted:
            return decision
        self._admit_waiting(replica, decision, budget, free, len(running))
        return decision

    def _admit_waiting(
        self, replica: ReplicaView, decision: ScheduleDecision, budget: int, free: int, num_running: int
    ) -> None:
        block_size = replica.kv.block_size
        for request in replica.waiting:
            if budget <= 0 or num_running >= self.params.max_num_seqs:
                return
            num_new = request.num_tokens - request.num_computed_tokens
            if num_new > budget:
                if not self.params.chunked_prefill:
                    return
                num_new = budget
            need = new_blocks_needed(request, num_new, block_size)
            if need > free:
                return
            free -= need
            budget -= num_new
            num_running += 1
            decision.scheduled.append((request, num_new))
