"""vLLM's scheduler: the v1 unified token budget, and v0's prefill-first mode."""
from __future__ import annotations

from pydantic import Field, model_validator

from servesim.policies.base import QueuePolicy
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.refs import QueueRef
from servesim.policies.registry import register
from servesim.policies.schedulers.ordered import OrderedParams, OrderedScheduler
from servesim.policies.views import KvView, ReplicaView, RequestView, blocks_to_admit, computed_on_admission


class VllmParams(OrderedParams):
    prefill_first: bool = Field(
        False,
        description="vLLM v0: a step that can admit prompts runs only prompts, pausing decodes "
        "(needs chunked_prefill: false)",
    )
    queue: QueueRef = Field(
        default_factory=QueueRef, description="order of the waiting queue (a registered queue policy)"
    )
    reserve_full_isl: bool = Field(
        True,
        description="admit a waiting (or preempted) request only when its whole sequence so far fits in the free "
        "KV blocks, not just its first chunk (vLLM's scheduler_reserve_full_isl, on by default in 0.19)",
    )

    @model_validator(mode="after")
    def _prefill_first_is_unchunked(self) -> VllmParams:
        if self.prefill_first and self.chunked_prefill:
            raise ValueError("prefill_first is vLLM v0 without chunked prefill; set chunked_prefill: false")
        return self


@register("scheduler", "vllm")
class VllmSchedulerPolicy(OrderedScheduler):
    """FCFS continuous batching under token, sequence and memory budgets (vLLM v1; v0 prefill-first).

    Source: Kwon et al., "Efficient Memory Management for Large Language Model Serving with
    PagedAttention", SOSP 2023, and the vLLM v1 scheduler's formulation, in which every request
    simply computes the tokens it has not computed yet. Each iteration first serves running
    requests in admission order (decodes and unfinished prefill chunks), preempting from the
    newest end when KV blocks run out, then admits waiting requests in queue order while budget,
    sequence slots and blocks remain; no request is admitted in an iteration that preempted.
    With `prefill_first` (vLLM v0's default), an iteration that can admit waiting prompts runs
    only those prompts and the running requests' decodes wait: the stall Sarathi-Serve removes.
    """

    Params = VllmParams
    params: VllmParams

    def build_queue(self) -> QueuePolicy:
        return self.params.queue.build(self.rng)

    def fits_on_admission(self, request: RequestView, num_new: int, free: int, kv: KvView) -> bool:
        if not self.params.reserve_full_isl:
            return True
        return blocks_to_admit(request, request.num_tokens - computed_on_admission(request, kv), kv) <= free

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        if self.params.prefill_first and replica.waiting:
            prompts = ScheduleDecision()
            self._admit_waiting(replica, self.order_waiting(replica, now), prompts, self.params.max_num_batched_tokens,
                                replica.kv.num_free_blocks, len(replica.running), now)
            if prompts.scheduled:
                return prompts
        return super().schedule(replica, now)
